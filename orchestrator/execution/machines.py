"""What the planner needs to predict a run on a given runner: its machine and its estimates.

``machine_for`` describes where the services will run: this machine's CPUs (affinity and
cgroup quotas included) for threads, processes and a local Dask or Ray, or what an existing
cluster reports; which services share an interpreter lock (the runner's worker processes
that run several at once: the threads runner's one, a Dask cluster's multi-threaded
workers); the runner's own per-service overhead as history measured it. ``planning_inputs`` adds the estimates (history first, see
``planning.estimates``), so ``run``, ``plan`` and ``tune`` all predict the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from runners import layout

from ..inputs.cores import busy_reader, local_cores
from ..inputs.history import History
from ..planning.estimates import Estimate, Observed, background, estimates, overhead
from ..planning.graph import Graph
from ..planning.machine import Machine


def runs_here(runner=None) -> bool:
    """Whether the services run on this machine: every runner but one connected to a cluster at an
    address (a local Dask or Ray cluster is started here)."""
    return getattr(runner, "address", None) is None


def busy_for(runner) -> Callable[[], float] | None:
    """The reader of this machine's busy CPU seconds a run's ``HistoryObserver`` records its load
    with, where the services run here; None on a cluster elsewhere (this machine's load says
    nothing of its cores)."""
    return busy_reader() if runs_here(runner) else None


def machine_for(runner_name: str, runner=None, observed: dict[str, list[Observed]] | None = None,
                workers: int | None = None, loads: Sequence[float] = ()) -> Machine:
    """``runner``: the started runner, if any; else ``workers``: the slots it will be started with.
    ``loads``: the background load of the runner's recent runs here (``History.background``), used
    where the services run on this machine."""
    cluster = getattr(runner, "cores", None)
    if cluster:
        cores, source = float(cluster), f"the {runner_name} cluster at {getattr(runner, 'address', '?')}"
    else:
        cores, source = local_cores()
    everything = [o for obs in (observed or {}).values() for o in obs]
    return Machine(cores=cores, gil_procs=shared_locks(runner_name, runner, workers),
                   overhead_s=overhead(everything, runner_name), source=source,
                   background=background(loads) if runs_here(runner) else 0.0)


def shared_locks(runner_name: str, runner=None, workers: int | None = None) -> tuple[int, ...]:
    """The threads of each worker process that runs several services at once (they share its
    interpreter lock): what the started runner says, else what it will start (a plan made before
    it has); () where every service has a process of its own (processes, Ray, one-thread workers)."""
    threads = getattr(runner, "threads_per_process", None)
    if runner_name == "threads":  # one process, whatever the slots: every service shares its lock
        return tuple(threads or (max(1, workers or 1),))
    if threads is None and runner_name == "dask" and workers and getattr(runner, "address", None) is None:
        threads = layout.local_dask(workers)
    # a cluster not yet asked: unknown, taken as one service per process like processes and Ray
    return tuple(threads) if threads and max(threads) > 1 else ()


@dataclass(frozen=True)
class PlanningInputs:
    estimates: list[Estimate]
    machine: Machine
    history_runs: int  # runs the history holds (0: none, or --no-history)
    #: the successful attempts per service the estimates came from (``History.observed``)
    observed: dict[str, list[Observed]] = field(default_factory=dict)


def planning_inputs(graph: Graph, runner_name: str, runner=None, history: History | None = None,
                    workers: int | None = None) -> PlanningInputs:
    observed = history.observed() if history is not None else {}
    return PlanningInputs(estimates(graph, observed, runner_name),
                          machine_for(runner_name, runner, observed, workers,
                                      history.background(runner_name) if history is not None else ()),
                          history.runs() if history is not None else 0, observed)
