"""Which duration and CPU demand the planner assumes for each service, and why.

Sources, best first (``Estimate.source``):
  * ``history``: the median of the service's recent successful attempts, from runs on
    the same runner kind when there are at least ``MIN_SAME_RUNNER`` of them, else from
    any runner. The median, not the mean: one attempt slowed by a noisy neighbour or a
    cold cache must not move the plan. History is keyed by service name, so a service
    whose params changed keeps its history;
  * ``declared``: the service's ``estimate``;
  * ``synthetic``: a synthetic service's ``duration``;
  * ``default``: 1 s (``model.DEFAULT_ESTIMATE_S``).

CPU demand (cores kept busy while the service runs alone) comes from history too
(CPU seconds / wall seconds, median); without history it is 1 for ``kind: cpu`` and
for code (a guess on the safe side), 0 for a synthetic sleep.

Plain data in, plain data out: the history store (``inputs.history``) reads the
attempts, this module only decides.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from .graph import Graph
from .machine import Demand
from .model import DEFAULT_ESTIMATE_S, Service

MIN_SAME_RUNNER = 3  # successful attempts on the runner kind before they outweigh other runners'
RECENT = 20  # attempts the median is taken over
SOURCES = ("history", "declared", "synthetic", "default")


@dataclass(frozen=True)
class Observed:
    """One successful attempt, as history recorded it."""
    duration_s: float  # worker-measured wall time
    runner: str
    cpu_s: float | None = None  # CPU seconds the service used (None: not measured)
    gil_s: float | None = None  # sharing a process (threads, Dask): its own thread's CPU seconds, holding the lock
    overhead_s: float | None = None  # dispatch to worker start + worker end to completion seen
    wall_s: float | None = None  # as measured; ``duration_s`` is the time it would take alone


@dataclass(frozen=True)
class Estimate:
    seconds: float
    source: str  # one of SOURCES
    runs: int  # successful attempts in history (of any runner)
    demand: Demand


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x) and x >= 0


def estimate(service: Service, observed: Sequence[Observed], runner: str | None = None) -> Estimate:
    """The estimate for ``service`` given its successful attempts, newest last."""
    good = [o for o in observed if _finite(o.duration_s)]
    same = [o for o in good if o.runner == runner]
    pick = (same if len(same) >= MIN_SAME_RUNNER else good)[-RECENT:]
    declared_cpu = 1.0 if (service.call is not None or service.kind in ("cpu", "work")) else 0.0
    if pick:
        seconds = statistics.median(o.duration_s for o in pick)
        cpu = [o.cpu_s / o.duration_s for o in pick if _finite(o.cpu_s) and o.duration_s > 0]
        gil = [o.gil_s / o.duration_s for o in pick if _finite(o.gil_s) and o.duration_s > 0]
        demand = Demand(cpu=statistics.median(cpu) if cpu else declared_cpu,
                        gil=min(1.0, statistics.median(gil)) if gil else 0.0)
        return Estimate(float(seconds), "history", len(good), demand)
    # code with no history is guessed to hold its process's lock as long as it computes; the lock
    # matters only where the machine puts several services in one process (``Machine.gil_procs``)
    demand = Demand(cpu=declared_cpu, gil=declared_cpu)
    if _finite(service.estimate):
        return Estimate(float(service.estimate), "declared", 0, demand)
    if _finite(service.duration):
        return Estimate(float(service.duration), "synthetic", 0, demand)
    return Estimate(DEFAULT_ESTIMATE_S, "default", 0, demand)


def estimates(graph: Graph, history: Mapping[str, Sequence[Observed]] | None = None,
              runner: str | None = None) -> list[Estimate]:
    """One estimate per service of ``graph``, in index order."""
    history = history or {}
    return [estimate(graph.services[n], history.get(n, ()), runner) for n in graph.names]


def overhead(observed: Iterable[Observed], runner: str | None) -> float:
    """The runner's median per-service overhead in history (0 when none was measured)."""
    values = [o.overhead_s for o in observed if o.runner == runner and _finite(o.overhead_s)]
    return float(statistics.median(values[-500:])) if values else 0.0


def background(loads: Sequence[float]) -> float:
    """The cores the machine keeps busy besides a run's services (its bookkeeping, the Prefect
    server, the engine's scheduler, other work), from the runner's recent runs: their median, so
    one run beside a noisy neighbour does not move the plan; 0 without any."""
    good = [x for x in loads if _finite(x)]
    return float(statistics.median(good)) if good else 0.0
