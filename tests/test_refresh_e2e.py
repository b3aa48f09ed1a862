"""The bundled refresh end to end, through critpath, on threads and on Dask worker processes.

Checks what an analyst would: the published snapshot's marts hold the right
numbers, recomputed here independently from the staged tables; and a failing
quality check stops publishing while everything independent of it still runs.

    ingest_* -> stage_* -> mart_* ----------\\
                       \\-> check_* ----------> publish_snapshot, publish_summary_html
"""
from __future__ import annotations

from decimal import Decimal

import duckdb
import pytest

from orchestrator.flows.flow import run
from orchestrator.inputs.loaders import load_module

SCALE = "0.02"


@pytest.fixture
def warehouse(tmp_path, monkeypatch):
    root = tmp_path / "warehouse"
    # read by the services at call time; worker processes started after this inherit it
    monkeypatch.setenv("CRITPATH_WAREHOUSE", str(root))
    monkeypatch.setenv("CRITPATH_SCALE", SCALE)
    monkeypatch.delenv("CRITPATH_FAULT", raising=False)
    return root


def _check_published(root):
    snap = duckdb.connect(str(root / "publish" / "marts.duckdb"), read_only=True)
    tables = {r[0] for r in snap.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert {"daily_revenue", "customer_ltv", "cohort_retention", "product_performance", "reorder_alerts",
            "funnel_conversion"} <= tables
    published = snap.execute("SELECT sum(revenue), sum(orders) FROM daily_revenue").fetchone()
    staged = duckdb.connect().execute(f"""
        SELECT sum(l.line_total), count(DISTINCT o.order_id)
        FROM read_parquet('{root}/staging/orders.parquet') o
        JOIN read_parquet('{root}/staging/order_lines.parquet') l USING (order_id)
        WHERE o.status IN ('completed', 'shipped')""").fetchone()
    assert published[0] == staged[0] and published[0] > Decimal(0)
    assert published[1] == staged[1]
    assert snap.execute("SELECT count(*) FROM funnel_conversion").fetchone()[0] > 0
    html = (root / "publish" / "summary.html").read_text()
    assert "<html" in html.lower() and "revenue" in html.lower()


@pytest.mark.parametrize("runner", ["threads", pytest.param("dask", marks=pytest.mark.dask)])
def test_whole_refresh_publishes_correct_marts(warehouse, runner):
    graph = load_module("services.refinery")
    report = run(graph, runner, max_concurrency=4, workers=4)
    states = {n: s["state"] for n, s in report["services"].items()}
    assert states == dict.fromkeys(graph.names, "completed"), report["failed"]
    assert len(states) == 26
    _check_published(warehouse)
    if runner == "dask":  # really ran in worker processes, not in this one
        import os

        assert all(not s["worker"].split(":")[1].startswith(str(os.getpid())) for s in report["services"].values())


def test_failed_check_skips_publishing_only(warehouse, monkeypatch):
    monkeypatch.setenv("CRITPATH_FAULT", "orphan_order_lines")
    report = run(load_module("services.refinery"), "threads", max_concurrency=4)
    assert report["failed"] == ["check_referential_integrity"]
    assert report["skipped"] == ["publish_snapshot", "publish_summary_html"]
    error = report["services"]["check_referential_integrity"]["error"]
    assert error.startswith("QualityCheckFailed") and "order_lines references(order_id" in error
    others = {n: s["state"] for n, s in report["services"].items() if n not in report["failed"] + report["skipped"]}
    assert set(others.values()) == {"completed"} and len(others) == 23
    assert not (warehouse / "publish" / "marts.duckdb").exists()
