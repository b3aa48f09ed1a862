"""critpath: run a graph of data services as one Prefect flow, as fast as its critical path.

What a user writes against::

    from orchestrator import service, load_module, make_plan, run

    @service(after=["load_orders"], pool="warehouse", estimate=30)
    def build_revenue(): ...

    graph = load_module("mypkg.services")
    print(make_plan(graph, 4).simulated_makespan_s)
    report = run(graph, runner="dask", max_concurrency=8)

Importing this package imports neither Prefect nor an engine and changes no environment
variable: ``run`` (which needs Prefect) and ``secret`` are loaded on first use.
The layers, lowest first (each imports only from those below it; see README, "Layout"):
``support``, ``planning``, ``inputs``, ``execution``, ``flows`` (Prefect), ``ui``.
"""
from __future__ import annotations

from .inputs.loaders import load_graph_file, load_module
from .planning.errors import CritpathError, GraphError
from .planning.graph import Graph
from .planning.model import Service, service
from .planning.planner import Plan, make_plan
from .planning.selection import SelectionError, select
from .planning.validate import validate

__all__ = ["CritpathError", "Graph", "GraphError", "Plan", "SelectionError", "Service", "load_graph_file",
           "load_module", "make_plan", "run", "secret", "select", "service", "validate"]


def __getattr__(name: str):
    if name == "run":  # the flow: imports Prefect
        from .flows.flow import run

        return run
    if name == "secret":
        from .flows.credentials import secret

        return secret
    raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
