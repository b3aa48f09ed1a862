"""Ingest: deterministic, sized by the scale knob, messy in the ways staging must clean.

The determinism test also runs the seven ingest services at the same time in
separate worker processes (as the orchestrator does) and demands the very same
bytes as the sequential build.
"""
from __future__ import annotations

import multiprocessing
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from datetime import date, datetime

from services import refinery
from services.refinery import ingest

from .util import SCALE, build, rows

INGEST = [fn for fn in refinery.SERVICES if fn.__name__.startswith("ingest_")]


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.glob("*/*.parquet"))}


def test_same_scale_gives_byte_identical_tables_even_when_built_concurrently_in_processes(built, tmp_path):
    root = tmp_path / "again"
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter, like a process or Dask worker
    with ProcessPoolExecutor(max_workers=2, mp_context=spawn) as pool:
        futures = [pool.submit(fn, warehouse=str(root), scale=SCALE, fault="") for fn in INGEST]
        results = [f.result() for f in futures]
    assert [r["table"] for r in results] == [
        "raw.customers", "raw.products", "raw.orders", "raw.order_lines", "raw.payments", "raw.web_events",
        "raw.inventory_snapshots"]
    build(root, names={fn.__name__ for fn in refinery.SERVICES
                       if fn.__name__.startswith(("stage_", "mart_"))})
    again, first = _files(root), _files(built)
    assert sorted(again) == sorted(first)
    assert [name for name in first if again[name] != first[name]] == []


def test_scale_sets_the_number_of_generating_keys(tmp_path):
    small, larger = tmp_path / "small", tmp_path / "larger"
    ingest.ingest_orders(warehouse=small, scale=0.002, fault="")
    ingest.ingest_orders(warehouse=larger, scale=0.004, fault="")
    assert ingest.sizes(0.002)["orders"] == 2_000 and ingest.sizes(0.004)["orders"] == 4_000
    assert len({r["order_id"] for r in rows(small, "raw.orders")}) == 2_000
    assert len({r["order_id"] for r in rows(larger, "raw.orders")}) == 4_000


def test_sizes_never_drop_below_the_minimum():
    assert ingest.sizes(1e-9) == ingest.MINIMUM
    assert ingest.sizes(1.0) == ingest.BASE


def test_every_source_has_re_sent_duplicates(built):
    keys = {"raw.customers": "customer_id", "raw.products": "product_id", "raw.orders": "order_id",
            "raw.order_lines": "line_id", "raw.payments": "payment_id", "raw.web_events": "event_id"}
    for table, key in keys.items():
        counts = Counter(r[key] for r in rows(built, table))
        assert any(n == 2 for n in counts.values()), f"{table} has no duplicate {key}"
        assert max(counts.values()) == 2, table
    snapshots = Counter((r["sku"].strip().upper(), r["warehouse_code"], r["snapshot_date"])
                        for r in rows(built, "raw.inventory_snapshots"))
    assert 2 in snapshots.values()


def test_raw_values_are_messy_on_purpose(built):
    emails = [r["email"] for r in rows(built, "raw.customers")]
    assert any(e != e.strip() for e in emails) and any(e != e.lower() for e in emails)
    assert any(r["country"] is None for r in rows(built, "raw.customers"))
    stamps = [r["ordered_at"] for r in rows(built, "raw.orders")]
    assert any("/" in s for s in stamps) and any("T" in s for s in stamps)
    statuses = {r["status"] for r in rows(built, "raw.orders")}
    assert {"completed", "COMPLETED", " completed ", "Completed"} <= statuses
    prices = [r["unit_price"] for r in rows(built, "raw.order_lines")]
    assert any("," in p for p in prices)
    amounts = [r["amount"] for r in rows(built, "raw.payments")]
    assert any(a.startswith("$") for a in amounts) and any(a.endswith("USD") for a in amounts)
    assert any(a.strip().startswith(("-", "$-")) for a in amounts)  # refunds
    kinds = {r["event_type"] for r in rows(built, "raw.web_events")}
    assert {"page_view", "PAGE_VIEW", "page-view"} <= kinds


def _parse_order_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y/%m/%d %H:%M:%S" if "/" in text else "%Y-%m-%dT%H:%M:%S")


def test_orders_fall_inside_the_year_and_after_the_customer_signed_up(built):
    signup = {r["customer_id"]: date.fromisoformat(r["signup_date"]) for r in rows(built, "raw.customers")}
    for r in rows(built, "raw.orders"):
        when = _parse_order_time(r["ordered_at"])
        assert date(2024, 1, 1) <= when.date() <= date.fromisoformat(ingest.AS_OF)
        assert signup[r["customer_id"]] <= when.date(), r


def test_order_lines_have_one_to_five_lines_per_order_and_reference_real_products(built):
    lines = {r["line_id"]: r for r in rows(built, "raw.order_lines")}
    per_order = Counter(r["order_id"] for r in lines.values())
    assert set(per_order.values()) <= {1, 2, 3, 4, 5}
    assert set(per_order) == {r["order_id"] for r in rows(built, "raw.orders")}
    products = {r["product_id"] for r in rows(built, "raw.products")}
    assert {r["product_id"] for r in lines.values()} <= products


def test_inventory_covers_every_product_dc_and_day(built):
    snaps = {(r["sku"].strip().upper(), r["warehouse_code"], r["snapshot_date"])
             for r in rows(built, "raw.inventory_snapshots")}
    n = ingest.sizes(SCALE)["products"]
    assert len(snaps) == n * len(ingest.DCS) * ingest.INVENTORY_DAYS


def test_orphan_fault_adds_lines_for_orders_that_do_not_exist(tmp_path):
    ingest.ingest_order_lines(warehouse=tmp_path, scale=0.002, fault="orphan_order_lines")
    orders = ingest.sizes(0.002)["orders"]
    orphans = [r for r in rows(tmp_path, "raw.order_lines") if r["order_id"] > orders]
    assert orphans and len({r["line_id"] for r in orphans}) == len(orphans)
