"""3. Critical-path efficiency on the graph families and every WfCommons trace,
scaled to a 3 s lower bound, at concurrency 2, 4 and 8: achieved makespan beside
the simple bound, the best schedule known (CP-SAT) and the plan's simulation.

The only assertion is an invariant noise cannot break: no service failed.
"""
from __future__ import annotations

import pytest

from benchmarks.conftest import engine_params
from benchmarks.measures import Efficiency


@pytest.mark.parametrize("engine", engine_params(), indirect=True)
def test_efficiency(benchmark, engine, settings, solved_cases, eff_case):
    case = Efficiency(engine, settings, solved_cases[eff_case])
    benchmark.pedantic(case.critpath_round, teardown=case.baseline_round, rounds=1, iterations=1)
    row = case.row()
    benchmark.extra_info.update(row)
    assert row["failed"] == 0
