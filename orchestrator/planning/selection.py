"""Selecting part of a graph: ``name``, ``+name`` (with its upstream), ``name+`` (with its
downstream), ``tag:x``; comma-separated terms are a union.

Edges to services outside the selection are dropped: they are neither run nor waited on.
A term that names nothing raises ``SelectionError`` with the term and the problem; the
caller says where the expression came from (``--select``, ``select`` in critpath.toml),
since only it knows.
"""
from __future__ import annotations

from .errors import CritpathError, did_you_mean
from .graph import Graph


class SelectionError(CritpathError):
    def __init__(self, term: str, problem: str):
        self.term, self.problem = term, problem
        super().__init__(f"selection {term!r}: {problem}")


def select(graph: Graph, expr: str | None) -> Graph:
    """The subgraph named by ``expr``; the whole graph (the same object) when it is empty."""
    if not expr or not expr.strip():
        return graph
    chosen: set[int] = set()
    tags = sorted({t for s in graph for t in s.tags})
    for raw in expr.split(","):
        term = raw.strip()
        if not term:  # ",", "a,,b", "a,": a term went missing, most likely by mistake
            raise SelectionError(expr.strip(), "an empty term between commas; write name, +name, name+ "
                                                "or tag:x, separated by single commas")
        if term.startswith("tag:"):
            tag = term[4:]
            hits = {i for i, n in enumerate(graph.names) if tag in graph.services[n].tags}
            if not hits:
                raise SelectionError(term, f"no service has tag {tag!r}{did_you_mean(tag, tags)}; "
                                           f"known tags: {', '.join(tags) or 'none'}")
            chosen |= hits
            continue
        up, down = term.startswith("+"), term.endswith("+")
        name = term[1 if up else 0:len(term) - 1 if down else len(term)].strip()
        if not name or name.startswith("+") or name.endswith("+"):
            raise SelectionError(term, "malformed: one '+' at most on each side of a name, e.g. +name, name+ "
                                       "or +name+")
        if name not in graph.index:
            raise SelectionError(term, f"unknown service {name!r}{did_you_mean(name, graph.names)}")
        i = graph.index[name]
        part = {i}
        if up:
            part |= graph.ancestors([i])
        if down:
            part |= graph.descendants([i])
        chosen |= part
    return graph.subgraph(graph.names[i] for i in chosen)
