"""What the planner needs to predict a run on a given runner: its machine and its estimates.

``machine_for`` describes where the services will run: this machine's CPUs (affinity and
cgroup quotas included) for threads, processes and a local Dask or Ray, or what an existing
cluster reports; the interpreter lock on threads; the runner's own per-service overhead as
history measured it. ``planning_inputs`` adds the estimates (history first, see
``planning.estimates``), so ``run``, ``plan`` and ``tune`` all predict the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..inputs.cores import local_cores
from ..inputs.history import History
from ..planning.estimates import Estimate, Observed, estimates, overhead
from ..planning.graph import Graph
from ..planning.machine import Machine


def machine_for(runner_name: str, runner=None, observed: dict[str, list[Observed]] | None = None) -> Machine:
    cluster = getattr(runner, "cores", None)
    if cluster:
        cores, source = float(cluster), f"the {runner_name} cluster at {getattr(runner, 'address', '?')}"
    else:
        cores, source = local_cores()
    everything = [o for obs in (observed or {}).values() for o in obs]
    return Machine(cores=cores, gil=runner_name == "threads", overhead_s=overhead(everything, runner_name),
                   source=source)


@dataclass(frozen=True)
class PlanningInputs:
    estimates: list[Estimate]
    machine: Machine
    history_runs: int  # runs the history holds (0: none, or --no-history)
    #: the successful attempts per service the estimates came from (``History.observed``)
    observed: dict[str, list[Observed]] = field(default_factory=dict)


def planning_inputs(graph: Graph, runner_name: str, runner=None, history: History | None = None) -> PlanningInputs:
    observed = history.observed() if history is not None else {}
    return PlanningInputs(estimates(graph, observed, runner_name), machine_for(runner_name, runner, observed),
                          history.runs() if history is not None else 0, observed)
