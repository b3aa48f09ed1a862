"""4. Planner scale: validating and planning 10,000 and 100,000 services (3 edges
each on average), timed and memory-measured in fresh subprocesses."""
from __future__ import annotations

import pytest

from benchmarks.planner_scale import Planner


@pytest.mark.parametrize("services", [10_000, 100_000], ids=["10k", "100k"])
def test_planner_scale(benchmark, settings, services):
    case = Planner(services, settings.planner_memory)
    benchmark.pedantic(case.critpath_round, rounds=1, iterations=1)
    row = case.row()
    benchmark.extra_info.update(row)
    assert row["edges"] > 2 * services  # the generator kept its shape
