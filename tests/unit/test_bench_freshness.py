"""The freshness measure's arithmetic: one round's parts from the event, the flow run and the
report, their medians, and the README table. Times are made-up Unix seconds."""
from __future__ import annotations

import pytest

from benchmarks.freshness import breakdown, summarize
from benchmarks.markdown import freshness as freshness_md

SENT = 1000.0


def report(*intervals, critical_path_s=2.0, failed=()):
    """A run report of services a, b, ... with these (start, end) intervals."""
    return {"services": {chr(97 + i): {"start": s, "end": e} for i, (s, e) in enumerate(intervals)},
            "measured_critical_path_s": critical_path_s, "failed": list(failed)}


def test_a_round_splits_into_prefects_part_critpaths_set_up_and_the_services():
    #  event 1000 -> created 1000.2 -> running 1002.7 -> first start 1003.2 -> last end 1006.2
    point = breakdown(SENT, 1000.2, 1002.7, report((1003.2, 1004.0), (1004.0, 1006.2), (1003.3, 1003.5),
                                                   critical_path_s=3.0))
    assert point["automation_s"] == pytest.approx(0.2)
    assert point["start_s"] == pytest.approx(2.5)
    assert point["prefect_s"] == pytest.approx(point["automation_s"] + point["start_s"])
    assert point["setup_s"] == pytest.approx(0.5)
    assert point["makespan_s"] == pytest.approx(3.0)
    assert point["freshness_s"] == pytest.approx(point["prefect_s"] + point["setup_s"] + point["makespan_s"])
    assert point["freshness_over_critical_path"] == pytest.approx(6.2 / 3.0)
    assert point["makespan_over_critical_path"] == pytest.approx(1.0)
    assert (point["services"], point["ran"], point["failed"]) == (3, 3, 0)


def test_services_that_did_not_run_are_left_out_and_a_report_where_none_ran_is_an_error():
    rep = report((1003.0, 1004.0), critical_path_s=None, failed=["b"])
    rep["services"]["b"] = {"start": None, "end": None}
    point = breakdown(SENT, 1000.1, 1002.0, rep)
    assert (point["ran"], point["failed"], point["makespan_s"]) == (1, 1, 1.0)
    assert point["freshness_over_critical_path"] is None  # no critical path known: no ratio
    with pytest.raises(ValueError, match="no service that ran"):
        breakdown(SENT, 1000.1, 1002.0, {"services": {"a": {"start": None, "end": None}}})


def test_the_rounds_are_summarized_by_their_medians_and_the_worst_freshness():
    points = [breakdown(SENT, SENT + a, SENT + a + b, report((SENT + a + b + 0.5, SENT + a + b + 2.5)))
              for a, b in ((0.1, 2.0), (0.3, 3.0), (0.2, 2.5))]
    summary = summarize(points)
    assert summary["automation_s"] == pytest.approx(0.2)
    assert summary["start_s"] == pytest.approx(2.5)
    assert summary["freshness_s"] == pytest.approx(0.2 + 2.5 + 2.5)
    assert summary["worst_freshness_s"] == pytest.approx(0.3 + 3.0 + 2.5)
    assert summarize([])["freshness_s"] is None


def test_the_readme_table_shows_prefects_part_beside_critpaths():
    row = {"runner": "threads", "scale": 1.0, "rounds": 3, **summarize(
        [breakdown(SENT, 1000.2, 1002.7, report((1003.2, 1006.2), critical_path_s=3.0))])}
    table = freshness_md([row])
    assert "| threads | 1 | 3 | 6.20 (6.20) | 2.70: 0.20 + 2.50 | 0.50 | 3.00 | 3.00 | 2.1 | 1.00 |" in table
