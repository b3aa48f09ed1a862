"""Staging: one row per key (the injected duplicates gone, the latest version kept), values cleaned."""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from services.refinery import staging
from services.refinery import warehouse as wh

from .util import rows

#: staged table -> (raw table, function of a raw row giving the dedup key, same for a staged row)
DEDUP = {
    "staging.customers": ("raw.customers", lambda r: r["customer_id"], lambda r: r["customer_id"]),
    "staging.products": ("raw.products", lambda r: r["product_id"], lambda r: r["product_id"]),
    "staging.orders": ("raw.orders", lambda r: r["order_id"], lambda r: r["order_id"]),
    "staging.order_lines": ("raw.order_lines", lambda r: r["line_id"], lambda r: r["line_id"]),
    "staging.payments": ("raw.payments", lambda r: r["payment_id"], lambda r: r["payment_id"]),
    "staging.inventory": ("raw.inventory_snapshots",
                          lambda r: (r["sku"].strip().upper(), r["warehouse_code"], r["snapshot_date"]),
                          lambda r: (r["sku"], r["warehouse_code"], r["snapshot_date"].isoformat())),
}


@pytest.mark.parametrize("table", sorted(DEDUP))
def test_dedup_removes_exactly_the_injected_duplicates(built, table):
    raw_table, raw_key, staged_key = DEDUP[table]
    raw_counts = Counter(raw_key(r) for r in rows(built, raw_table))
    duplicates = sum(n - 1 for n in raw_counts.values())
    staged = [staged_key(r) for r in rows(built, table)]
    assert duplicates > 0
    assert len(staged) == len(set(staged)), "a key appears twice in staging"
    assert set(staged) == set(raw_counts)
    assert sum(raw_counts.values()) - len(staged) == duplicates


def test_staged_tables_are_ordered_by_key(built):
    for table, (_, _, key) in DEDUP.items():
        keys = [key(r) for r in rows(built, table)]
        assert keys == sorted(keys), table


def test_the_latest_version_of_a_customer_wins(built):
    raw = rows(built, "raw.customers")
    resent = {r["customer_id"]: r["email"] for r in raw if r["_ingested_at"] == max(x["_ingested_at"] for x in raw)}
    staged = {r["customer_id"]: r["email"] for r in rows(built, "staging.customers")}
    assert resent
    assert all(staged[c] == email.strip().lower() for c, email in resent.items())


def test_customer_values_are_cleaned(built):
    for r in rows(built, "staging.customers"):
        assert r["email"] == r["email"].strip().lower() and "@" in r["email"]
        assert len(r["country"]) == 2 and r["country"] == r["country"].upper()
    assert "ZZ" in {r["country"] for r in rows(built, "staging.customers")}  # the NULL countries


def test_order_timestamps_from_both_formats_parse_to_the_same_instant(built):
    raw = {r["order_id"]: r["ordered_at"] for r in rows(built, "raw.orders")}
    for r in rows(built, "staging.orders"):
        text = raw[r["order_id"]]
        fmt = "%Y/%m/%d %H:%M:%S" if "/" in text else "%Y-%m-%dT%H:%M:%S"
        assert r["ordered_at"] == datetime.strptime(text, fmt)
        assert r["order_date"] == r["ordered_at"].date()
    assert {r["status"] for r in rows(built, "staging.orders")} == {"completed", "shipped", "cancelled", "refunded"}


def test_money_text_in_every_spelling_becomes_exact_decimals(built):
    raw = {r["line_id"]: r for r in rows(built, "raw.order_lines")}
    for r in rows(built, "staging.order_lines"):
        assert r["unit_price"] == Decimal(raw[r["line_id"]]["unit_price"].replace(",", "."))
        assert r["quantity"] == int(raw[r["line_id"]]["quantity"]) and 1 <= r["quantity"] <= 4
        assert r["line_total"] == r["quantity"] * r["unit_price"]
    amounts = {r["payment_id"]: r["amount"] for r in rows(built, "staging.payments")}
    for r in rows(built, "raw.payments"):
        text = r["amount"].strip().replace("$", "").replace(" USD", "").replace(",", ".")
        assert amounts[r["payment_id"]] == Decimal(text)


def test_payments_match_the_shops_order_totals(built):
    """Two systems, one truth: captures minus refunds equal the order total, or zero if refunded."""
    totals, status = Counter(), {r["order_id"]: r["status"] for r in rows(built, "staging.orders")}
    for r in rows(built, "staging.order_lines"):
        totals[r["order_id"]] += r["line_total"]
    net = Counter()
    for r in rows(built, "staging.payments"):
        net[r["order_id"]] += r["amount"]
        assert (r["kind"] == "refund") == (r["amount"] < 0)
    for order, s in status.items():
        expected = {"cancelled": None, "refunded": Decimal(0)}.get(s, totals[order])
        assert net.get(order) == expected, (order, s)


def test_inventory_keeps_the_recount(built):
    raw = {}
    for r in rows(built, "raw.inventory_snapshots"):
        key = (r["sku"].strip().upper(), r["warehouse_code"], r["snapshot_date"])
        if key not in raw or r["_ingested_at"] > raw[key]["_ingested_at"]:
            raw[key] = r
    for r in rows(built, "staging.inventory"):
        assert r["on_hand"] == raw[(r["sku"], r["warehouse_code"], r["snapshot_date"].isoformat())]["on_hand"]


# -- sessionization, on events written by hand --------------------------------------
T0 = datetime(2024, 6, 1, 12, 0, 0)


def _event(event_id, visitor, minutes, kind, received="2024-12-31 23:00:00", device="mobile"):
    ms = int((T0 + timedelta(minutes=minutes) - datetime(1970, 1, 1)).total_seconds() * 1000)
    return f"({event_id}, '{visitor}', '{kind}', '{device}', {ms}, TIMESTAMP '{received}')"


def test_sessions_split_after_thirty_quiet_minutes_and_count_each_event_once(tmp_path):
    """
    visitor a:  0 view, 10 PRODUCT-VIEW, 40 cart  | 71 view           (gap 31 min -> new session)
    visitor b:  5 view (sent twice), 35 view       (gap exactly 30 min -> same session)
    """
    events = [
        _event(1, "a", 0, "page_view", device="desktop"), _event(2, "a", 10, "PRODUCT-VIEW"),
        _event(3, "a", 40, "Add_To_Cart"), _event(4, "a", 71, "page_view"),
        _event(5, "b", 5, "page_view"), _event(5, "b", 5, "page_view", received="2024-12-31 23:10:00"),
        _event(6, "b", 35, "page_view"),
    ]
    with wh.sql(tmp_path) as con:
        wh.write(con, tmp_path, "raw.web_events",
                 "SELECT * FROM (VALUES " + ", ".join(events) + ") "
                 "t(event_id, visitor_id, event_type, device, ts_ms, _received_at)")
    assert staging.stage_sessions(warehouse=tmp_path) == {"table": "staging.sessions", "rows": 3}
    got = [(r["session_id"], r["device"], r["events"], r["page_views"], r["product_views"], r["added_to_cart"],
            r["started_at"], r["ended_at"]) for r in rows(tmp_path, "staging.sessions")]
    minute = lambda m: T0 + timedelta(minutes=m)
    assert got == [
        ("a-1", "desktop", 3, 1, 1, True, minute(0), minute(40)),
        ("a-2", "mobile", 1, 1, 0, False, minute(71), minute(71)),
        ("b-1", "mobile", 2, 2, 0, False, minute(5), minute(35)),
    ]


def test_sessions_account_for_every_distinct_event(built):
    events = {r["event_id"] for r in rows(built, "raw.web_events")}
    sessions = rows(built, "staging.sessions")
    assert sum(r["events"] for r in sessions) == len(events)
    assert all(r["started_at"] <= r["ended_at"] for r in sessions)


def test_dropped_order_lines_fault_loses_lines_in_staging(clean_copy):
    before = len(rows(clean_copy, "staging.order_lines"))
    staging.stage_order_lines(warehouse=clean_copy, fault="dropped_order_lines")
    after = len(rows(clean_copy, "staging.order_lines"))
    assert 0 < before - after < before * 0.05
