"""``critpath bench --check``: only broken invariants fail, never a missed target."""
from __future__ import annotations

import pytest

from benchmarks.check import broken, missed, warnings
from orchestrator.flows.settings import FLUSH, SERVER_DEFAULTS, server_fixes


def eff(**kw):
    row = {"measure": "efficiency", "runner": "dask", "case": "chain", "concurrency": 2, "bound_s": 3.0,
           "best_s": 3.2, "simulated_s": 3.3, "critpath_s": 3.4, "failed": 0, "achieved_over_simulated": 1.03,
           "simulated_over_best": 1.03, "target_met": True, "simulated_target_met": True}
    return {**row, **kw}


def hop(**kw):
    row = {"measure": "overhead", "runner": "ray", "critpath_ms_per_hop": 3.0, "raw_round_trip_ms_per_hop": 1.0,
           "target_ms_per_hop": 7.0, "target_met": True, "failed": 0}
    return {**row, **kw}


def test_all_fine():
    assert broken([eff(), hop()]) == [] and missed([eff(), hop()]) == []


def test_efficiency_against_best_then_bound():
    assert broken([eff(critpath_s=4.79)]) == []  # 1.497 x best: slow, not broken
    [msg] = broken([eff(critpath_s=4.9)])
    assert "chain @ 2" in msg and "1.5 x the best schedule known (3.20 s)" in msg
    [msg] = broken([eff(best_s=None, critpath_s=4.6)])  # no solver result: the simple bound
    assert "the lower bound (3.00 s)" in msg


def test_overhead_is_ten_round_trips_plus_five_ms():
    assert broken([hop(critpath_ms_per_hop=14.9)]) == []
    [msg] = broken([hop(critpath_ms_per_hop=15.1)])
    assert "over 10 x the raw round trip (1.00 ms) + 5 ms = 15.00 ms" in msg
    # threads: a 0.03 ms raw round trip must not make 1 ms of jitter a failure
    assert broken([hop(runner="threads", critpath_ms_per_hop=1.0, raw_round_trip_ms_per_hop=0.03)]) == []


def test_failures_and_errors_break():
    assert "2 critpath service run(s) failed" in broken([hop(failed=2)])[0]
    assert "the measurement failed: RuntimeError: boom" in broken(
        [{"measure": "throughput", "runner": "ray", "concurrency": 8, "error": "RuntimeError: boom"}])[0]


def test_missed_targets_are_reported_not_broken():
    rows = [eff(critpath_s=3.6, achieved_over_simulated=1.09, target_met=False),
            hop(critpath_ms_per_hop=9.0, target_met=False),
            {"measure": "throughput", "runner": "dask", "concurrency": 8, "critpath_per_s": 120.0,
             "target_met": False, "failed": 0}]
    assert broken(rows) == []
    got = missed(rows)
    assert any("achieved / simulated 1.090" in m for m in got)
    assert any("120 services/s < 300" in m for m in got)
    assert any("9.00 ms per hop > target 7.00 ms" in m for m in got)
    # the plan's own target is per case: once, not once per runner
    assert sum("simulated / best" in m for m in missed([eff(simulated_over_best=1.2, simulated_target_met=False),
                                                          eff(runner="ray", simulated_over_best=1.2,
                                                              simulated_target_met=False)])) == 1


def test_baseline_problems_are_warnings():
    rows = [hop(native_failed=3, baseline_errors=["TimeoutError: slow"])]
    assert broken(rows) == []
    assert len(warnings(rows)) == 2


@pytest.mark.parametrize("value, fixed", [("0.25", {FLUSH: "1"}), ("1", {}), ("5", {}), ("junk", {})])
def test_recorder_flush_interval_is_whole_seconds(value, fixed):
    assert server_fixes({FLUSH: value}) == fixed


def test_servers_critpath_starts_never_busy_loop_on_a_sub_second_flush(monkeypatch, tmp_path):
    import os

    from orchestrator.flows.serving import server_command
    from orchestrator.flows.settings import prefect_env_defaults

    assert server_fixes(SERVER_DEFAULTS) == {}  # its own default is whole seconds
    monkeypatch.setattr(os, "environ", {FLUSH: "0.25"})  # a user's value under a second; nothing leaks
    assert server_command(str(tmp_path), "127.0.0.1", 4200)[1][FLUSH] == "1"  # ``critpath server``
    prefect_env_defaults()  # the temporary server a run starts
    assert os.environ[FLUSH] == "1"


def test_cli_rejects_unknown_names_with_the_choices():
    from benchmarks.cli import MEASURES, _choices
    from orchestrator.planning.errors import CritpathError

    assert _choices("--only", "overhead, planner", MEASURES) == ("overhead", "planner")
    with pytest.raises(CritpathError, match="'efficency'.*choose from overhead,throughput"):
        _choices("--only", "efficency", MEASURES)


def test_tables_render_rows_with_missing_baselines():
    from rich.console import Console

    from benchmarks.tables import print_tables

    console = Console(record=True, width=200)
    row = {**hop(), "hops": 50, "critpath_recorded_ms_per_hop": 9.0, "native": None, "native_ms_per_hop": None,
           "raw": "ProcessPoolExecutor", "raw_in_engine_ms_per_hop": None, "critpath_over_raw_round_trip": 3.0,
           "native_over_critpath": None}
    print_tables({"overhead": [row]}, console)
    text = console.export_text()
    assert "n/a" in text and "ProcessPoolExecutor" in text
