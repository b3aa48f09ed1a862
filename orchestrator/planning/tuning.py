"""Choosing limits from a prediction: the sweep behind ``critpath tune`` and the default concurrency.

For every candidate setting (a global limit, each pool's limit, cpu-aware on or off)
the planner predicts the makespan on the machine model (``machine.predict``) with the
estimates it has. The recommendation is the *smallest* setting whose prediction is
within ``tolerance`` of the best one: more slots than that buy nothing but contention
and load on the warehouse. Ties prefer fewer total pool slots, then cpu-aware off
(the simpler policy), then the smaller global limit.

Pool limits are swept one pool at a time around their current value (halved, -1,
current, +1, doubled), the others held at their current values, and the best of each
is then combined: a full cross product grows as (choices ^ pools).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from .estimates import Estimate
from .graph import Graph
from .planner import make_plan

DEFAULT_TOLERANCE = 0.02


@dataclass(frozen=True)
class Candidate:
    max_concurrency: int
    pools: dict[str, int] = field(default_factory=dict)
    cpu_aware: bool = False
    predicted_makespan_s: float = 0.0
    simulated_makespan_s: float = 0.0

    def to_json(self) -> dict:
        return {"max_concurrency": self.max_concurrency, "pools": dict(self.pools), "cpu_aware": self.cpu_aware,
                "predicted_makespan_s": self.predicted_makespan_s,
                "simulated_makespan_s": self.simulated_makespan_s}


def _with_pools(graph: Graph, pools: dict[str, int]) -> Graph:
    return graph if pools == graph.pools else Graph(graph.declared, pools, graph.source)


def evaluate(graph: Graph, estimates: Sequence[Estimate], machine, max_concurrency: int,
             pools: dict[str, int] | None = None, cpu_aware: bool = False) -> Candidate:
    pools = dict(graph.pools if pools is None else pools)
    plan = make_plan(_with_pools(graph, pools), max_concurrency, estimates=list(estimates), machine=machine,
                     cpu_aware=cpu_aware)
    return Candidate(max_concurrency, pools, plan.cpu_aware, plan.predicted_makespan_s or plan.simulated_makespan_s,
                     plan.simulated_makespan_s)


def pool_choices(current: int, cap: int) -> list[int]:
    return sorted({max(1, min(cap, v)) for v in (current // 2, current - 1, current, current + 1, current * 2)})


def sweep(graph: Graph, estimates: Sequence[Estimate], machine, max_limit: int,
          cpu_aware_options: Sequence[bool] = (False, True)) -> list[Candidate]:
    """Every global limit 1..``max_limit`` with the pools at their current limits, cpu-aware on
    and off; then each pool around its current limit (the global limit out of the way); then
    every global limit again with the pool limits chosen."""
    out = [evaluate(graph, estimates, machine, limit, None, aware)
           for aware in cpu_aware_options for limit in range(1, max_limit + 1)]
    if not graph.pools:
        return out
    chosen = dict(graph.pools)
    for pool, current in sorted(graph.pools.items()):
        trials = [evaluate(graph, estimates, machine, max_limit, {**chosen, pool: v}, False)
                  for v in pool_choices(current, max_limit)]
        fastest = min(t.predicted_makespan_s for t in trials)
        chosen[pool] = min(t.pools[pool] for t in trials if t.predicted_makespan_s <= fastest * (1 + 1e-9))
    if chosen != graph.pools:
        out += [evaluate(graph, estimates, machine, limit, chosen, aware)
                for aware in cpu_aware_options for limit in range(1, max_limit + 1)]
    return out


def recommend(candidates: Sequence[Candidate], tolerance: float = DEFAULT_TOLERANCE) -> Candidate:
    """The smallest setting predicted within ``tolerance`` of the best."""
    best = min(c.predicted_makespan_s for c in candidates)
    good = [c for c in candidates if c.predicted_makespan_s <= best * (1 + tolerance) + 1e-12]
    return min(good, key=lambda c: (sum(c.pools.values()), c.max_concurrency, c.cpu_aware))


def default_concurrency(graph: Graph, estimates: Sequence[Estimate], machine, cap: int,
                        tolerance: float = DEFAULT_TOLERANCE, budget: int = 400_000) -> int | None:
    """The global limit the prediction recommends (cpu-aware off, pools as they are), or None when
    the graph is too big to sweep within ``budget`` (services x limits tried)."""
    if not len(graph) or len(graph) * cap > budget:
        return None
    return recommend(sweep(graph, estimates, machine, cap, (False,)), tolerance).max_concurrency

