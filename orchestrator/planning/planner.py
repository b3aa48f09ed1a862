"""Planning: estimates, critical path, priorities, bounds and a simulated makespan.

Everything here is plain Python over the integer-indexed ``Graph`` (no engine is
imported), linear in services + edges except the simulation's heap operations.

  priority(s)       = est(s) + max(priority(d) for d downstream of s)   (bottom level)
  critical path     = the chain that realises max(priority)
  lower bound       = max(critical path, total work / max concurrency,
                          work in pool p / limit(p) for every pool)
  simulated makespan = the dispatcher's own policy (``policy.ReadyQueue``) run
                       against the estimates with zero overhead

Dispatch rank. The dispatcher starts ready services in ``rank`` order. It is the
bottom level (critical-path list scheduling) unless forward-backward improvement
(Valls, Ballestin and Quintanilla 2005, "justification") finds a shorter simulated
schedule: the schedule is right-justified (run backwards on the reversed graph, the
latest finishers first), then left-justified again (the earliest right-justified
starters first), which packs work tighter against pools and the global limit. It
keeps the result only when it is shorter; ``rank`` then orders services by their
start in that schedule. Bottom level alone can lose 20% on pool-bound graphs, where
what matters is feeding the bottleneck pool early, not the longest path.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from .errors import GraphError
from .graph import Graph
from .policy import ReadyQueue
from .validate import cycle_problems, self_loops


@dataclass(frozen=True)
class Plan:
    graph: Graph
    max_concurrency: int
    est: list[float]
    priority: list[float]
    critical_path: list[str]
    critical_path_s: float
    total_work_s: float
    lower_bound_s: float
    simulated_makespan_s: float
    pool_bounds_s: dict[str, float] = field(default_factory=dict)
    simulated_start_s: list[float] = field(default_factory=list)
    #: the dispatch order, highest first (``priority`` unless improvement found better)
    rank: list[float] = field(default_factory=list)
    justified: bool = False  # rank comes from forward-backward improvement

    @property
    def constraint(self) -> str:
        """What sets the lower bound: 'critical path', 'concurrency' or 'pool NAME'."""
        options = {"critical path": self.critical_path_s,
                   "concurrency": self.total_work_s / self.max_concurrency}
        options.update({f"pool {p}": v for p, v in self.pool_bounds_s.items()})
        return max(options, key=lambda k: (options[k], k == "critical path"))

    def to_json(self) -> dict:
        g = self.graph
        return {
            "services": {
                n: {"after": [g.names[u] for u in g.preds[i]], "estimate_s": self.est[i],
                    "priority_s": self.priority[i], "pool": g.services[n].pool,
                    "tags": list(g.services[n].tags),
                    "simulated_start_s": self.simulated_start_s[i] if self.simulated_start_s else None}
                for i, n in enumerate(g.names)},
            "edges": [list(e) for e in g.edges],
            "pools": dict(g.pools),
            "critical_path": list(self.critical_path),
            "critical_path_s": self.critical_path_s,
            "total_work_s": self.total_work_s,
            "lower_bound_s": self.lower_bound_s,
            "simulated_makespan_s": self.simulated_makespan_s,
            "justified": self.justified,  # dispatch order from forward-backward improvement
            "max_concurrency": self.max_concurrency,
            "pool_bounds_s": dict(self.pool_bounds_s),
            "constraint": self.constraint,
        }


def priorities(graph: Graph, est: list[float], order: list[int]) -> list[float]:
    prio = [0.0] * len(est)
    succs = graph.succs
    for i in reversed(order):
        tail = 0.0
        for j in succs[i]:
            if prio[j] > tail:
                tail = prio[j]
        prio[i] = est[i] + tail
    return prio


def critical_path(graph: Graph, prio: list[float]) -> list[int]:
    """Follow the highest bottom level from the best source; ties go to the smaller name."""
    if not prio:
        return []
    sources = [i for i, p in enumerate(graph.preds) if not p]
    node = min(sources, key=lambda i: (-prio[i], i))
    path = [node]
    while graph.succs[node]:
        node = min(graph.succs[node], key=lambda j: (-prio[j], j))
        path.append(node)
    return path


def simulate(graph: Graph, est: list[float], prio: list[float], max_concurrency: int):
    """Makespan and start times of the dispatcher's policy when every service takes its estimate."""
    q = ReadyQueue(graph, prio, max_concurrency)
    start = [0.0] * len(est)
    events: list[tuple[float, int]] = []
    now = 0.0
    while True:
        for i in q.pop_startable():
            start[i] = now
            heapq.heappush(events, (now + est[i], i))
        if not events:
            break
        now, i = heapq.heappop(events)
        q.release(i)
        q.completed(i)
        # completions at the same instant are all seen before the next dispatch,
        # as the dispatcher drains every completion already queued
        while events and events[0][0] == now:
            _, j = heapq.heappop(events)
            q.release(j)
            q.completed(j)
    return now, start


@dataclass(frozen=True)
class Bounds:
    """No schedule of these durations under these limits can finish sooner than ``lower_bound_s``."""
    priority: list[float]
    critical_path: list[int]
    critical_path_s: float
    total_work_s: float
    pool_bounds_s: dict[str, float]
    lower_bound_s: float


def bounds(graph: Graph, durations: list[float], max_concurrency: int, order: list[int] | None = None) -> Bounds:
    """Critical path, total work and the lower bound for ``durations`` (one per service).

    Used twice: on the estimates by ``make_plan``, and on the measured durations by the
    report, which judges a run's efficiency against what its services really took."""
    prio = priorities(graph, durations, graph.topo_order() if order is None else order)
    path = critical_path(graph, prio)
    cp = prio[path[0]] if path else 0.0
    total = sum(durations)
    pool_work: dict[str, float] = {}
    for i, n in enumerate(graph.names):
        p = graph.services[n].pool
        if p is not None:
            pool_work[p] = pool_work.get(p, 0.0) + durations[i]
    pool_bounds = {p: w / graph.pools[p] for p, w in sorted(pool_work.items()) if graph.pools.get(p)}
    return Bounds(prio, path, cp, total, pool_bounds, max([cp, total / max_concurrency, *pool_bounds.values()]))


class _Reversed:
    """The graph with every edge turned around, as much of it as ``ReadyQueue`` reads."""

    def __init__(self, graph: Graph):
        self.names, self.services, self.pools = graph.names, graph.services, graph.pools
        self.preds, self.succs = graph.succs, graph.preds


#: improvement simulates the graph about ``2 * JUSTIFY_PASSES`` more times per start:
#: skipped beyond this size, where a plan must stay fast (100,000 services in under 3 s)
JUSTIFY_MAX_SERVICES = 20_000
JUSTIFY_PASSES = 4
MIN_GAIN = 1e-3  # relative
#: extra starts (bottom levels perturbed by up to 30%, fixed seed) while the simulated
#: service count stays within this budget: 16 for small graphs, none at 20,000
RESTARTS, RESTART_BUDGET = 16, 200_000


def justify(graph: Graph, est: list[float], rank: list[float], max_concurrency: int,
            makespan: float, start: list[float], target: float) -> tuple[float, list[float], list[float]] | None:
    """Forward-backward improvement of the schedule ``rank`` produced; returns
    (makespan, start times, rank) of a strictly shorter one, or None."""
    reverse = _Reversed(graph)
    best = None
    for _ in range(JUSTIFY_PASSES):
        if makespan <= target * (1 + 1e-9):
            break  # at the lower bound: nothing shorter exists
        finish = [start[i] + est[i] for i in range(len(est))]
        back, back_start = simulate(reverse, est, finish, max_concurrency)
        right_start = [back - back_start[i] - est[i] for i in range(len(est))]
        new_rank = [-x for x in right_start]
        new_makespan, new_start = simulate(graph, est, new_rank, max_concurrency)
        # a gain within noise is not worth leaving critical-path order, which is the
        # more robust one when real durations differ from the estimates
        if new_makespan >= makespan * (1 - MIN_GAIN):
            break
        makespan, start, best = new_makespan, new_start, (new_makespan, new_start, new_rank)
    return best


def improve(graph: Graph, est: list[float], priority: list[float], max_concurrency: int,
            makespan: float, start: list[float], target: float) -> tuple[float, list[float], list[float]] | None:
    """The shortest schedule found by justifying the bottom-level schedule and a few
    perturbed ones (list scheduling is sensitive to ties and near-ties, and
    justification converges to a local optimum near where it starts); None if none
    is shorter by ``MIN_GAIN``. Deterministic: the perturbations have a fixed seed."""
    import random

    best = justify(graph, est, priority, max_concurrency, makespan, start, target)
    best_makespan = best[0] if best else makespan
    rng = random.Random(0)
    for _ in range(min(RESTARTS, RESTART_BUDGET // (len(est) * (2 * JUSTIFY_PASSES + 1) or 1))):
        if best_makespan <= target * (1 + 1e-9):
            break
        rank = [p * (1 + 0.3 * rng.random()) for p in priority]
        m, st = simulate(graph, est, rank, max_concurrency)
        found = justify(graph, est, rank, max_concurrency, m, st, target) or (m, st, rank)
        if found[0] < best_makespan * (1 - MIN_GAIN):
            best, best_makespan = found, found[0]
    return best


def make_plan(graph: Graph, max_concurrency: int, simulate_schedule: bool = True) -> Plan:
    order = graph.topo_order()
    if order is None:  # validate() reports every problem; this guards callers that skipped it
        raise GraphError(cycle_problems(graph) + self_loops(graph), graph.source)
    est = [graph.services[n].est for n in graph.names]
    b = bounds(graph, est, max_concurrency, order)
    rank, justified = b.priority, False
    if simulate_schedule:
        makespan, starts = simulate(graph, est, rank, max_concurrency)
        if len(graph) <= JUSTIFY_MAX_SERVICES:
            better = improve(graph, est, rank, max_concurrency, makespan, starts, b.lower_bound_s)
            if better is not None:
                (makespan, starts, rank), justified = better, True
    else:
        makespan, starts = float("nan"), []
    return Plan(graph, max_concurrency, est, b.priority, [graph.names[i] for i in b.critical_path], b.critical_path_s,
                b.total_work_s, b.lower_bound_s, makespan, b.pool_bounds_s, starts, rank, justified)
