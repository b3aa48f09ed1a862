"""Planning: estimates, critical path, priorities, bounds and a simulated makespan.

Everything here is plain Python over the integer-indexed ``Graph`` (no engine is
imported), linear in services + edges except the simulation's heap operations.

  priority(s)       = est(s) + max(priority(d) for d downstream of s)   (bottom level)
  critical path     = the chain that realises max(priority)
  lower bound       = max(critical path, total work / max concurrency,
                          work in pool p / limit(p) for every pool)
  simulated makespan = the dispatcher's own policy (``policy.ReadyQueue``) run
                       against the estimates with zero overhead
  predicted makespan = the same policy on a model of the machine (``machine.predict``):
                       its cores, the services' CPU demand, the runner's overhead
  with a machine, the lower bound also counts CPU work / cores

Estimates come from ``estimates.estimates`` (history, else declared, else synthetic,
else 1 s) when the caller passes them, else from the services' declarations.

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
from .estimates import Estimate
from .graph import Graph
from .machine import Demand, Machine, predict
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
    #: per service: where its estimate came from and how many successful attempts history holds
    estimate_source: list[str] = field(default_factory=list)
    history_runs: list[int] = field(default_factory=list)
    demand: list[Demand] = field(default_factory=list)
    machine: Machine | None = None
    cpu_aware: bool = False  # admission also keeps the CPU demand running within the cores
    predicted_makespan_s: float | None = None  # on ``machine``; None without one
    cpu_work_s: float = 0.0  # sum of estimate x CPU demand

    @property
    def constraint(self) -> str:
        """What sets the lower bound: 'critical path', 'concurrency' or 'pool NAME'."""
        options = {"critical path": self.critical_path_s,
                   "concurrency": self.total_work_s / self.max_concurrency}
        if self.machine is not None and self.machine.cores > 0:
            options["cores"] = self.cpu_work_s / self.machine.cores
        options.update({f"pool {p}": v for p, v in self.pool_bounds_s.items()})
        return max(options, key=lambda k: (options[k], k == "critical path"))

    def to_json(self) -> dict:
        g = self.graph
        return {
            "services": {
                n: {"after": [g.names[u] for u in g.preds[i]], "estimate_s": self.est[i],
                    "priority_s": self.priority[i], "pool": g.services[n].pool,
                    "tags": list(g.services[n].tags),
                    "simulated_start_s": self.simulated_start_s[i] if self.simulated_start_s else None,
                    "estimate_source": self.estimate_source[i] if self.estimate_source else None,
                    "history_runs": self.history_runs[i] if self.history_runs else 0,
                    "cpu_demand": self.demand[i].cpu if self.demand else None}
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
            "predicted_makespan_s": self.predicted_makespan_s,
            "cores": self.machine.cores if self.machine else None,
            "cores_source": self.machine.source if self.machine else None,
            "background_cores": self.machine.background if self.machine else None,
            "cpu_work_s": self.cpu_work_s,
            "cpu_aware": self.cpu_aware,
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


def simulate(graph: Graph, est: list[float], prio: list[float], max_concurrency: int,
             cpu: list[float] | None = None, cores: float | None = None):
    """Makespan and start times of the dispatcher's policy when every service takes its estimate
    (``cpu`` and ``cores``: with cpu-aware admission)."""
    q = ReadyQueue(graph, prio, max_concurrency, cpu, cores)
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


def make_plan(graph: Graph, max_concurrency: int, simulate_schedule: bool = True,
              estimates: list[Estimate] | None = None, machine: Machine | None = None,
              cpu_aware: bool = False) -> Plan:
    """The plan of ``graph`` under ``max_concurrency``: from ``estimates`` when given (see
    ``estimates.estimates``), else from the declarations; predicted on ``machine`` when given.
    ``cpu_aware`` (needs ``machine``) admits services only while their CPU demand fits its cores."""
    order = graph.topo_order()
    if order is None:  # validate() reports every problem; this guards callers that skipped it
        raise GraphError(cycle_problems(graph) + self_loops(graph), graph.source)
    if estimates is None:
        est = [graph.services[n].est for n in graph.names]
        sources, runs, demand = [], [], []
    else:
        est = [e.seconds for e in estimates]
        sources, runs, demand = [e.source for e in estimates], [e.runs for e in estimates], [e.demand for e in estimates]
    cpu_aware = bool(cpu_aware and machine is not None and demand)
    cpu, cores = ([d.cpu for d in demand], machine.cores) if cpu_aware else (None, None)
    b = bounds(graph, est, max_concurrency, order)
    cpu_work = sum(e * d.cpu for e, d in zip(est, demand, strict=True)) if demand else 0.0
    lower = b.lower_bound_s
    if machine is not None and machine.cores > 0 and demand:
        lower = max(lower, cpu_work / machine.cores)
    rank, justified = b.priority, False
    if simulate_schedule:
        makespan, starts = simulate(graph, est, rank, max_concurrency, cpu, cores)
        if len(graph) <= JUSTIFY_MAX_SERVICES and not cpu_aware:
            better = improve(graph, est, rank, max_concurrency, makespan, starts, lower)
            if better is not None:
                (makespan, starts, rank), justified = better, True
    else:
        makespan, starts = float("nan"), []
    predicted = None
    if machine is not None and simulate_schedule:
        demand = demand or [Demand(1.0 if s.call is not None or s.kind in ("cpu", "work") else 0.0) for s in graph]
        predicted = predict(graph, est, demand, rank, max_concurrency, machine, cpu_aware).makespan_s
    return Plan(graph, max_concurrency, est, b.priority, [graph.names[i] for i in b.critical_path], b.critical_path_s,
                b.total_work_s, lower, makespan, b.pool_bounds_s, starts, rank, justified,
                sources, runs, demand, machine, cpu_aware, predicted, cpu_work)
