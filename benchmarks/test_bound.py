"""pytest-benchmark view of ``benchmarks.bound``: one benchmark per (graph, runner).

The ratio makespan / lower bound is saved in ``extra_info`` so that
``--benchmark-save`` / ``--benchmark-compare`` track it across commits. The only
assertion is an invariant noise cannot break: the run completed every service.
"""
from __future__ import annotations

import pytest

from benchmarks.graphs import ISSUE_GRAPHS
from orchestrator.flow import run
from orchestrator.planner import make_plan

SLOTS = 2
RUNNERS = [pytest.param("threads"), pytest.param("processes"),
           pytest.param("dask", marks=pytest.mark.dask), pytest.param("ray", marks=pytest.mark.ray)]


@pytest.fixture(scope="module", params=RUNNERS)
def engine(request):
    from runners import make_runner

    with make_runner(request.param, SLOTS) as runner:
        yield runner


@pytest.mark.parametrize("graph_name", list(ISSUE_GRAPHS))
def test_makespan_over_bound(benchmark, engine, graph_name):
    graph = ISSUE_GRAPHS[graph_name]()
    plan = make_plan(graph, SLOTS)
    reports = []
    benchmark.pedantic(lambda: reports.append(run(graph, engine, max_concurrency=SLOTS)), rounds=3, iterations=1)
    spans = sorted(r["makespan_s"] for r in reports)
    benchmark.extra_info.update(runner=engine.name, lower_bound_s=plan.lower_bound_s,
                                makespan_s=spans[len(spans) // 2],
                                ratio_to_bound=spans[len(spans) // 2] / plan.lower_bound_s)
    assert all(not r["failed"] and len(r["services"]) == len(graph) for r in reports)
