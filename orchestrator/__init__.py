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

# Every name is loaded on first use (PEP 562), so `import orchestrator` costs nothing and
# the `critpath` entry point can install its signal handlers before anything heavy loads.
_PUBLIC = {
    "CritpathError": ".planning.errors", "GraphError": ".planning.errors", "Graph": ".planning.graph",
    "Service": ".planning.model", "service": ".planning.model", "Plan": ".planning.planner",
    "make_plan": ".planning.planner", "SelectionError": ".planning.selection", "select": ".planning.selection",
    "validate": ".planning.validate", "load_graph_file": ".inputs.loaders", "load_module": ".inputs.loaders",
    "run": ".flows.flow",  # imports Prefect
    "secret": ".flows.credentials",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
    globals()[name] = value  # once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
