"""How the CLI chooses what the user did not say: the concurrency, from the machine and history.

Without ``--max-concurrency`` or ``--workers`` (flag or critpath.toml), a local refresh runs at
the concurrency its prediction recommends (``planning.tuning.default_concurrency``): on 2 cores
a graph of CPU-heavy services gets about 2, a graph of sleeping ones as many as help. That
needs to know how much CPU each service wants, so it applies only when every service's demand
is known (history, or a synthetic kind); otherwise, and on a cluster given by ``--address``,
the runner's capacity (8 by default) stays the default, as before. Each choice says where it
came from.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..execution.machines import planning_inputs
from ..inputs.history import History
from ..planning.graph import Graph
from ..planning.ranges import DEFAULT_CONCURRENCY
from ..planning.tuning import default_concurrency


@dataclass(frozen=True)
class Concurrency:
    value: int | None  # None: leave it to the runner's capacity
    source: str


def choose_concurrency(graph: Graph, runner: str, given: int | None, given_by: str, address: str | None,
                       history: History | None) -> Concurrency:
    if given is not None:
        return Concurrency(given, given_by)
    if address:
        return Concurrency(None, "the cluster's capacity")
    inputs = planning_inputs(graph, runner, None, history)
    unknown = [e for e, s in zip(inputs.estimates, graph, strict=True)
               if e.source != "history" and s.call is not None]
    if unknown or not len(graph):
        return Concurrency(None, f"the runner's default ({DEFAULT_CONCURRENCY}); "
                                 f"{len(unknown)} service(s) have no history to predict from")
    cap = max(DEFAULT_CONCURRENCY, int(2 * inputs.machine.cores))
    best = default_concurrency(graph, inputs.estimates, inputs.machine, cap)
    if best is None:
        return Concurrency(None, f"the runner's default ({DEFAULT_CONCURRENCY}); the graph is too big to sweep")
    known = "history" if any(e.source == "history" for e in inputs.estimates) else "the declared durations"
    return Concurrency(best, f"the smallest predicted best on {inputs.machine.cores:g} cores "
                             f"({inputs.machine.source}), from {known}")
