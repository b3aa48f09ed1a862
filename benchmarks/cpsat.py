"""The best schedule known for a graph under its limits: an exact CP-SAT model.

The simple lower bound max(critical path, total work / concurrency) is often out
of reach (on montage-chameleon-2mass-005d at concurrency 8 no schedule does better
than 1.30 times it), so "achieved / bound" alone cannot say whether a makespan is
good. This model answers what the best possible schedule is, or, when the time
limit runs out first, brackets it: the solver's best schedule found is an upper
bound on the optimum, its proven bound a lower one.

Model (times in integer milliseconds, the estimates rounded):

  start[i] in [head(i), horizon - tail(i)]      head/tail: longest path before/after i
  start[v] >= start[u] + d[u]                   for every edge u -> v
  cumulative(all services, demand 1, capacity = max concurrency)
  cumulative(services of pool p, demand 1, capacity = limit(p))   for every pool
  makespan >= start[i] + d[i]                   for every sink
  minimize makespan

The horizon and the solver's first solution come from the planner's own list
schedule rerun on the rounded durations, which is feasible by construction; the
solver can only improve on it. ``verify`` checks any schedule against the same
rules without ortools (the tests use it).

ortools is a benchmark-only dependency (``pip install -e ".[bench]"``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

from orchestrator.planning.graph import Graph
from orchestrator.planning.planner import priorities, simulate

MISSING = ("the best-known column needs ortools, a benchmark-only dependency: "
           "pip install -e \".[bench]\" (or pip install ortools)")


@dataclass(frozen=True)
class Solution:
    status: str  # OPTIMAL, FEASIBLE (time limit hit), or UNKNOWN / INFEASIBLE / MODEL_INVALID
    makespan_s: float  # the best schedule found
    bound_s: float  # proven: no schedule is shorter
    starts_ms: tuple[int, ...]  # start of each service, in graph index order
    durations_ms: tuple[int, ...]
    wall_s: float

    @property
    def optimal(self) -> bool:
        return self.status == "OPTIMAL"


def durations_ms(graph: Graph) -> list[int]:
    return [int(round(graph.services[n].est * 1000)) for n in graph.names]


def list_schedule(graph: Graph, d: list[int], max_concurrency: int) -> tuple[int, list[int]]:
    """The planner's policy (critical-path-first list scheduling) on integer durations."""
    order = graph.topo_order()
    prio = priorities(graph, [float(x) for x in d], order)
    makespan, starts = simulate(graph, [float(x) for x in d], prio, max_concurrency)
    return int(round(makespan)), [int(round(s)) for s in starts]


def best_schedule(graph: Graph, max_concurrency: int, time_limit_s: float = 10.0, workers: int = 8,
                  seed: int = 0) -> Solution:
    """Solve the model; raises ImportError (with how to install) if ortools is missing."""
    try:
        from ortools.sat.python import cp_model
    except ImportError as exc:
        raise ImportError(MISSING) from exc

    t0 = time.monotonic()
    n = len(graph)
    d = durations_ms(graph)
    order = graph.topo_order()
    if order is None:
        raise ValueError("the graph has a cycle; run validate() first")
    horizon, hint = list_schedule(graph, d, max_concurrency)
    head = [0] * n
    for i in order:
        for j in graph.succs[i]:
            head[j] = max(head[j], head[i] + d[i])
    tail = [int(t) for t in priorities(graph, d, order)]  # d[i] + longest path after i
    lower = max([max((tail[i] for i in range(n)), default=0), math.ceil(sum(d) / max_concurrency)]
                + [math.ceil(sum(d[i] for i in range(n) if graph.services[graph.names[i]].pool == p) / lim)
                   for p, lim in graph.pools.items()])
    if n == 0:
        return Solution("OPTIMAL", 0.0, 0.0, (), (), 0.0)

    m = cp_model.CpModel()
    start = [m.new_int_var(head[i], max(head[i], horizon - tail[i]), f"s{i}") for i in range(n)]
    interval = [m.new_fixed_size_interval_var(start[i], d[i], f"x{i}") for i in range(n)]
    for i in range(n):
        for u in graph.preds[i]:
            m.add(start[i] >= start[u] + d[u])
    if max_concurrency < n:
        m.add_cumulative(interval, [1] * n, max_concurrency)
    for pool, limit in sorted(graph.pools.items()):
        members = [interval[i] for i in range(n) if graph.services[graph.names[i]].pool == pool]
        if limit == 1:
            m.add_no_overlap(members)
        elif limit < len(members):
            m.add_cumulative(members, [1] * len(members), limit)
    makespan = m.new_int_var(min(lower, horizon), horizon, "makespan")
    for i in range(n):
        if not graph.succs[i]:
            m.add(makespan >= start[i] + d[i])
    m.minimize(makespan)
    for i in range(n):
        m.add_hint(start[i], hint[i])
    m.add_hint(makespan, horizon)

    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = float(time_limit_s)
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = seed
    status = solver.solve(m)
    name = solver.status_name(status)
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        starts = tuple(int(solver.value(s)) for s in start)
        best = solver.objective_value
        bound = solver.best_objective_bound
    else:  # nothing better than the list schedule was proven feasible: keep it
        starts, best, bound = tuple(hint), float(horizon), float(lower)
    return Solution(name, best / 1000.0, bound / 1000.0, starts, tuple(d), time.monotonic() - t0)


def verify(graph: Graph, starts: list[int] | tuple[int, ...], d: list[int] | tuple[int, ...],
           max_concurrency: int) -> list[str]:
    """Every way ``starts`` breaks a precedence, the concurrency or a pool limit (none: valid)."""
    problems = []
    names = graph.names
    for i in range(len(graph)):
        if starts[i] < 0:
            problems.append(f"{names[i]!r} starts before 0")
        for u in graph.preds[i]:
            if starts[i] < starts[u] + d[u]:
                problems.append(f"{names[i]!r} starts at {starts[i]} before {names[u]!r} ends at {starts[u] + d[u]}")
    groups = {None: (list(range(len(graph))), max_concurrency)}
    for pool, limit in graph.pools.items():
        groups[pool] = ([i for i in range(len(graph)) if graph.services[names[i]].pool == pool], limit)
    for pool, (members, limit) in groups.items():
        # ends sort before starts at the same instant: a slot freed at t is free at t
        events = sorted([(starts[i], 1) for i in members if d[i] > 0]
                        + [(starts[i] + d[i], -1) for i in members if d[i] > 0])
        running = 0
        for t, delta in events:
            running += delta
            if running > limit:
                what = "concurrency" if pool is None else f"pool {pool!r}"
                problems.append(f"{running} services run at t={t} ms, over the {what} limit {limit}")
                break
    return problems
