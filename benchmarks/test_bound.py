"""pytest-benchmark view of ``benchmarks.bound``: the issue's two graphs at 2 slots,
critpath on every runner beside the level-by-level executor.

The ratio makespan / lower bound is saved in ``extra_info`` so that
``--benchmark-save`` / ``--benchmark-compare`` track it across commits. The only
assertion is an invariant noise cannot break: the run completed every service.
"""
from __future__ import annotations

import pytest

from benchmarks.conftest import engine_params
from benchmarks.graphs import ISSUE_GRAPHS
from benchmarks.levels import run_levels
from orchestrator.planning.planner import make_plan

SLOTS = 2


@pytest.mark.parametrize("graph_name", list(ISSUE_GRAPHS))
@pytest.mark.parametrize("engine", engine_params(), indirect=True)
def test_makespan_over_bound(benchmark, engine, graph_name):
    graph = ISSUE_GRAPHS[graph_name]()
    plan = make_plan(graph, SLOTS)
    reports = []
    levels = []
    benchmark.pedantic(lambda: reports.append(engine.run(graph, SLOTS)),
                       teardown=lambda: levels.append(run_levels(graph, SLOTS)), rounds=3, iterations=1)
    spans = sorted(r["makespan_s"] for r in reports)
    median = spans[len(spans) // 2]
    level = sorted(levels)[len(levels) // 2]
    benchmark.extra_info.update(runner=engine.name, lower_bound_s=plan.lower_bound_s, makespan_s=median,
                                ratio_to_bound=median / plan.lower_bound_s, level_by_level_s=level,
                                level_by_level_ratio_to_bound=level / plan.lower_bound_s)
    assert all(not r["failed"] and len(r["services"]) == len(graph) for r in reports)
