"""Orders as an incremental source: a newer day lands, ``ingest_orders+`` appends it and rebuilds
what depends on orders, and nothing on the web side is rewritten.

    ingest_orders -> stage_orders -> marts (revenue, LTV, cohorts, products -> reorders)
                                  -> checks -> publish          rebuilt
    ingest_web_events -> stage_sessions -> mart_funnel_conversion  untouched

The services of ``ingest_orders+`` run here in dependency order, as an event-triggered
refresh runs them (tests/test_incremental_refresh.py does it through ``critpath serve``).
"""
from __future__ import annotations

import hashlib
import shutil
from datetime import date

import pyarrow.parquet as pq
import pytest

from orchestrator.inputs.loaders import load_module
from orchestrator.planning.selection import select
from services.refinery import ingest
from services.refinery import warehouse as wh

from .util import SCALE, build, rows

#: what the web side writes: an orders event must not rewrite any of it
WEB = ("raw/web_events.parquet", "staging/sessions.parquet", "marts/funnel_conversion.parquet")
NEW_DAY = date(2025, 1, 1)


def orders_plus() -> set[str]:
    return set(select(load_module("services.refinery"), "ingest_orders+").names)


def files(root) -> dict[str, tuple[int, int, str]]:
    """Every file of the warehouse but the landing folder: (inode, mtime ns, sha256)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not rel.startswith("landing/"):
            st = p.stat()
            out[rel] = (st.st_ino, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def test_a_newer_day_of_orders_is_appended_and_only_the_orders_side_is_rebuilt(clean_copy):
    root = clean_copy
    before = files(root)
    raw_before = rows(root, "raw.orders")
    landed = ingest.land_orders(warehouse=root, scale=SCALE)
    assert landed == root / "landing" / "orders" / f"{NEW_DAY}.parquet"
    build(root, names=orders_plus())  # raises if a check fails: the checks passed
    after = files(root)

    # appended: every row of the extract, then the new day's orders, ids continuing the extract's
    raw_after = rows(root, "raw.orders")
    assert raw_after[:len(raw_before)] == raw_before
    new = raw_after[len(raw_before):]
    extract_ids = {r["order_id"] for r in raw_before}
    assert new and all(r["ordered_at"].startswith(str(NEW_DAY)) for r in new)
    assert min(r["order_id"] for r in new) == max(extract_ids) + 1
    staged = [r for r in rows(root, "staging.orders") if r["order_date"] == NEW_DAY]
    assert len(staged) == len(new)

    # downstream rebuilt with the new day: daily revenue now ends on it (no lines yet, so no revenue)
    revenue = rows(root, "marts.daily_revenue")
    earning = sum(1 for r in staged if r["status"] in ("completed", "shipped"))
    assert revenue[-1] == {"day": NEW_DAY, "orders": earning, "units": 0, "revenue": 0, "avg_order_value": None}
    assert revenue[-2]["day"] == date.fromisoformat(ingest.AS_OF)

    rewritten = {f for f in before if after[f][:2] != before[f][:2]}
    assert rewritten == {"raw/orders.parquet", "staging/orders.parquet", "marts/daily_revenue.parquet",
                         "marts/customer_ltv.parquet", "marts/cohort_retention.parquet",
                         "marts/product_performance.parquet", "marts/reorder_alerts.parquet",
                         "publish/marts.duckdb", "publish/summary.html"}
    for f in WEB:
        assert after[f] == before[f], f  # same inode, same mtime, same bytes

    # idempotent: ingesting again does not append the day twice, and a full refresh from
    # nothing with the same landing builds the same tables as the incremental refresh did
    assert ingest.ingest_orders(warehouse=root, scale=SCALE, fault="")["rows"] == len(raw_after)
    full = root.parent / "full"
    shutil.copytree(root / "landing", full / "landing")
    build(full)
    again = files(full)
    assert {f: h for f, (_, _, h) in again.items() if f.endswith(".parquet")} == \
           {f: h for f, (_, _, h) in files(root).items() if f.endswith(".parquet")}


def test_the_next_landing_is_the_next_day_and_a_day_lands_once(tmp_path):
    first = ingest.land_orders(warehouse=tmp_path, scale=SCALE)
    second = ingest.land_orders(warehouse=tmp_path, scale=SCALE)
    assert [first.stem, second.stem] == ["2025-01-01", "2025-01-02"]
    a, b = pq.read_table(first).column("order_id").to_pylist(), pq.read_table(second).column("order_id").to_pylist()
    assert a[-1] + 1 == b[0]  # ids go on, day after day, never shared
    assert [p.name for p in ingest.landed(tmp_path)] == ["2025-01-01.parquet", "2025-01-02.parquet"]
    (tmp_path / ingest.LANDING / "2025-01-03.parquet.part").write_bytes(b"half")  # being written: not landed
    (tmp_path / ingest.LANDING / "notes.parquet").write_bytes(b"x")  # not a day
    assert len(ingest.landed(tmp_path)) == 2


def test_bad_landings_say_which_file_or_day_and_how_to_fix_it(tmp_path):
    with pytest.raises(wh.WarehouseError, match=r"day 2024-06-01 is not after the extract's last day 2024-12-31"):
        ingest.land_orders("2024-06-01", warehouse=tmp_path, scale=SCALE)
    with pytest.raises(wh.WarehouseError, match=r"day 'tomorrow' is not an ISO date"):
        ingest.land_orders("tomorrow", warehouse=tmp_path, scale=SCALE)
    folder = tmp_path / ingest.LANDING
    folder.mkdir(parents=True)
    import pyarrow as pa

    pq.write_table(pa.table({"order_id": [1], "total": [9.5]}), folder / "2025-01-01.parquet")
    with pytest.raises(wh.WarehouseError, match=r"2025-01-01.parquet' has columns order_id, total; "
                                                r"a day of orders needs exactly order_id, customer_id"):
        ingest.ingest_orders(warehouse=tmp_path, scale=SCALE, fault="")
