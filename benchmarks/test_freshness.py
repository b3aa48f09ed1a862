"""7. Freshness: an event on ``ingest_orders`` to the last service of ``ingest_orders+`` done,
through ``critpath serve`` of the bundled refresh; Prefect's part (event -> flow run running)
in the row beside critpath's."""
from __future__ import annotations

import pytest

from benchmarks.freshness import Freshness


def test_freshness(benchmark, bench_server, settings):
    if "freshness" not in settings.measures:
        pytest.skip("not in the quick subset: serving the refresh takes too long for it")
    with Freshness(bench_server, settings) as case:
        benchmark.pedantic(case.critpath_round, rounds=settings.freshness_rounds, iterations=1)
        row = case.row()
    benchmark.extra_info.update({k: v for k, v in row.items() if k != "points"})
    assert row["failed"] == 0 and row["rounds"] == settings.freshness_rounds
