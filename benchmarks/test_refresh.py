"""5. The bundled refresh (``services.refinery``) end to end on each runner:
makespan / the bound of the durations as run, beside the same functions as
Prefect-native tasks and on the raw engine. Skipped, with the reason, while the
refinery is not importable."""
from __future__ import annotations

import pytest

from benchmarks.conftest import engine_params
from benchmarks.measures import Refresh, refinery_graph


@pytest.mark.parametrize("engine", engine_params(), indirect=True)
def test_refresh(benchmark, engine, settings):
    graph, why = refinery_graph()
    if graph is None:
        pytest.skip(why)
    case = Refresh(engine, settings, graph)
    benchmark.pedantic(case.critpath_round, teardown=case.baseline_round, rounds=1, iterations=1)
    row = case.row()
    benchmark.extra_info.update(row)
    assert row["failed"] == 0
