"""The dependency graph: services indexed by position, edges as integer lists.

Services are indexed in sorted-name order, so everything derived from a graph
(topological order, priorities, the simulated schedule) is the same whatever
order the services were declared in and whatever the hash seed. Edges to unknown
services are kept out of the index; ``validate`` reports them.

Cycle detection returns the cycle in order with its first node repeated at the
end, like ``graphlib.CycleError.args[1]``.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Iterable, Mapping

from .model import Service


class Graph:
    def __init__(self, services: Iterable[Service], pools: Mapping[str, int] | None = None,
                 source: str | None = None):
        self.source = source
        self.pools: dict[str, int] = dict(pools or {})
        self.declared: list[Service] = list(services)  # as given, duplicates included
        by_name: dict[str, Service] = {}
        for s in self.declared:
            by_name.setdefault(s.name, s)
        self.names: list[str] = sorted(by_name)
        self.services: dict[str, Service] = {n: by_name[n] for n in self.names}
        self.index: dict[str, int] = {n: i for i, n in enumerate(self.names)}
        idx = self.index
        self.preds: list[list[int]] = []
        for n in self.names:
            # dict.fromkeys drops repeated edges but keeps their order
            ups = [idx[a] for a in dict.fromkeys(self.services[n].after) if a in idx]
            self.preds.append(ups)
        self.succs: list[list[int]] = [[] for _ in self.names]
        for i, ups in enumerate(self.preds):
            for u in ups:
                self.succs[u].append(i)

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self):
        return iter(self.services.values())

    @property
    def edges(self) -> list[tuple[str, str]]:
        """(upstream, downstream) pairs between known services."""
        return [(self.names[u], self.names[i]) for i, ups in enumerate(self.preds) for u in ups]

    # -- order -------------------------------------------------------------
    def topo_order(self) -> list[int] | None:
        """Indices in dependency order (Kahn's algorithm), or None when there is a cycle."""
        indeg = [len(p) for p in self.preds]
        order = [i for i, d in enumerate(indeg) if d == 0]
        succs = self.succs
        for i in order:  # order grows while we walk it
            for j in succs[i]:
                indeg[j] -= 1
                if indeg[j] == 0:
                    order.append(j)
        return order if len(order) == len(indeg) else None

    def find_cycles(self) -> list[list[str]]:
        """Distinct cycles found by a depth-first walk, each as ``[a, b, c, a]``."""
        WHITE, GREY, BLACK = 0, 1, 2
        color = [WHITE] * len(self.names)
        cycles: list[list[str]] = []
        seen: set[frozenset[int]] = set()
        for root in range(len(self.names)):
            if color[root] != WHITE:
                continue
            # iterative DFS over successors; `path` mirrors the grey stack
            stack = [(root, iter(self.succs[root]))]
            path = [root]
            color[root] = GREY
            while stack:
                node, it = stack[-1]
                nxt = next(it, None)
                if nxt is None:
                    stack.pop()
                    path.pop()
                    color[node] = BLACK
                elif color[nxt] == WHITE:
                    color[nxt] = GREY
                    stack.append((nxt, iter(self.succs[nxt])))
                    path.append(nxt)
                elif color[nxt] == GREY and nxt != node:
                    cyc = path[path.index(nxt):]
                    key = frozenset(cyc)
                    if key not in seen:
                        seen.add(key)
                        # start at the smallest name so the message is stable
                        k = cyc.index(min(cyc))
                        cyc = cyc[k:] + cyc[:k]
                        cycles.append([self.names[i] for i in cyc] + [self.names[cyc[0]]])
        return cycles

    # -- closures and subgraphs (selection.py parses --select expressions) --------------
    def ancestors(self, roots: Iterable[int]) -> set[int]:
        return self._closure(roots, self.preds)

    def descendants(self, roots: Iterable[int]) -> set[int]:
        return self._closure(roots, self.succs)

    @staticmethod
    def _closure(roots: Iterable[int], adj: list[list[int]]) -> set[int]:
        seen = set(roots)
        todo = list(seen)
        while todo:
            for j in adj[todo.pop()]:
                if j not in seen:
                    seen.add(j)
                    todo.append(j)
        return seen

    def subgraph(self, names: Iterable[str]) -> "Graph":
        keep = set(names)
        kept = [replace(s, after=tuple(a for a in s.after if a in keep))
                for n, s in self.services.items() if n in keep]
        return Graph(kept, self.pools, self.source)
