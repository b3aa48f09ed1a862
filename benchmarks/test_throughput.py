"""2. Fan-out throughput: services per second of independent no-op services, at
the runner's default concurrency (beside Prefect-native and the raw engine) and
at a higher one (critpath and the raw engine).

The only assertion is an invariant noise cannot break: no service failed.
"""
from __future__ import annotations

import pytest

from benchmarks.conftest import engine_params
from benchmarks.measures import Throughput


@pytest.mark.parametrize("engine", engine_params(8) + engine_params(64), indirect=True)
def test_fanout_throughput(benchmark, engine, settings):
    high = engine.slots != settings.slots
    if high and not settings.high_concurrency:
        pytest.skip("the quick set measures throughput at the default concurrency only")
    case = Throughput(engine, settings, engine.slots, with_native=not high)
    benchmark.pedantic(case.critpath_round, teardown=case.baseline_round,
                       rounds=1 if high else settings.throughput_repeats, iterations=1)
    row = case.row()
    benchmark.extra_info.update(row)
    assert row["failed"] == 0
