"""1. Critical-path overhead: ms per hop of a 50-service no-op chain, beside
Prefect-native ``wait_for`` chains and the raw engine (in-engine and round trip).

The only assertion is an invariant noise cannot break: no service failed.
Targets and ratios are in ``extra_info`` (and in ``critpath bench``'s tables).
"""
from __future__ import annotations

import pytest

from benchmarks.conftest import engine_params
from benchmarks.measures import Overhead


@pytest.mark.parametrize("engine", engine_params(), indirect=True)
def test_chain_overhead(benchmark, engine, settings):
    case = Overhead(engine, settings)
    benchmark.pedantic(case.critpath_round, teardown=case.baseline_round, rounds=settings.overhead_repeats,
                       iterations=1)
    row = case.row()
    benchmark.extra_info.update(row)
    assert row["failed"] == 0
