"""Staging: one typed, deduplicated, cleaned table per raw source.

Rules every staging service follows, so the quality checks can rely on them:

* **One row per key.** Raw feeds re-send rows; staging keeps the one with the
  latest ``_ingested_at`` (``_received_at`` for the tracker). Nothing else is
  dropped: a row that cannot be cleaned fails the service loudly (strict
  ``CAST``/``strptime``) instead of vanishing, which is what lets
  ``check_row_counts`` demand *staged rows == distinct raw keys*.
* **Typed.** Text money becomes ``DECIMAL(12,2)`` (exact sums in the marts),
  text dates become ``DATE``/``TIMESTAMP``, codes get one spelling.
* **Ordered by key.** Output order is fixed, so a rebuild writes the same file.

Web events are the exception to "one row per raw row": ``stage_sessions``
turns deduplicated events into sessions (a new session after 30 minutes of
inactivity, per visitor), the heaviest step of the refresh.
"""
from __future__ import annotations

import logging

from orchestrator import service

from . import warehouse as wh

log = logging.getLogger(__name__)

SESSION_GAP_MINUTES = 30
COMMON = dict(pool="warehouse", retries=1, retry_delay=1.0)

# text money in any of the feeds' spellings ("$12.50", "12,50", "12.50 USD", " -3.10") -> DECIMAL
MONEY = "CAST(regexp_replace(replace(trim({col}), ',', '.'), '[^0-9.-]', '', 'g') AS DECIMAL(12,2))"


def _stage(name: str, reads: list[str], query: str, warehouse) -> dict:
    base = wh.root(warehouse)
    with wh.sql(base, reads) as con:
        rows = wh.write(con, base, name, query)
    log.info("wrote %s rows to %s", f"{rows:,}", name)
    return {"table": name, "rows": rows}


def _latest(key: str, stamp: str = "_ingested_at") -> str:
    """The dedup rule: keep each key's most recently ingested row."""
    return f"QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY {stamp} DESC) = 1"


@service(after=["ingest_customers"], tags=["staging", "customers"], estimate=0.2, timeout=120, **COMMON)
def stage_customers(*, warehouse=None, scale=None, fault=None) -> dict:
    """staging.customers: lower-case emails, ISO country codes ('ZZ' when unknown)."""
    query = f"""
        SELECT customer_id, full_name, lower(trim(email)) AS email,
               coalesce(upper(trim(country)), 'ZZ') AS country,
               CAST(signup_date AS DATE) AS signup_date
        FROM raw.customers {_latest('customer_id')}
        ORDER BY customer_id"""
    return _stage("staging.customers", ["raw.customers"], query, warehouse)


@service(after=["ingest_products"], tags=["staging", "catalog"], estimate=0.05, timeout=120, **COMMON)
def stage_products(*, warehouse=None, scale=None, fault=None) -> dict:
    """staging.products: upper-case SKUs, lower-case categories, list price as DECIMAL."""
    query = f"""
        SELECT product_id, upper(trim(sku)) AS sku, name, lower(trim(category)) AS category,
               {MONEY.format(col='list_price')} AS list_price
        FROM raw.products {_latest('product_id')}
        ORDER BY product_id"""
    return _stage("staging.products", ["raw.products"], query, warehouse)


@service(after=["ingest_orders"], tags=["staging", "sales"], estimate=1.2, timeout=300, **COMMON)
def stage_orders(*, warehouse=None, scale=None, fault=None) -> dict:
    """staging.orders: both timestamp formats parsed, one spelling per status."""
    query = f"""
        SELECT order_id, customer_id,
               strptime(ordered_at, ['%Y-%m-%dT%H:%M:%S', '%Y/%m/%d %H:%M:%S']) AS ordered_at,
               CAST(strptime(ordered_at, ['%Y-%m-%dT%H:%M:%S', '%Y/%m/%d %H:%M:%S']) AS DATE) AS order_date,
               lower(trim(status)) AS status, channel
        FROM raw.orders {_latest('order_id')}
        ORDER BY order_id"""
    return _stage("staging.orders", ["raw.orders"], query, warehouse)


@service(after=["ingest_order_lines"], tags=["staging", "sales"], estimate=1.8, timeout=300, **COMMON)
def stage_order_lines(*, warehouse=None, scale=None, fault=None) -> dict:
    """staging.order_lines: integer quantities, DECIMAL prices and line totals.

    Fault ``dropped_order_lines`` loses 1% of lines here, as a buggy filter would.
    """
    lossy = "AND hash(line_id) % 100 <> 0" if "dropped_order_lines" in wh.faults(fault) else ""
    query = f"""
        SELECT line_id, order_id, product_id, CAST(trim(quantity) AS INTEGER) AS quantity,
               {MONEY.format(col='unit_price')} AS unit_price,
               CAST(trim(quantity) AS INTEGER) * {MONEY.format(col='unit_price')} AS line_total
        FROM raw.order_lines
        WHERE true {lossy}
        {_latest('line_id')}
        ORDER BY line_id"""
    return _stage("staging.order_lines", ["raw.order_lines"], query, warehouse)


@service(after=["ingest_payments"], tags=["staging", "finance"], estimate=1.1, timeout=300, **COMMON)
def stage_payments(*, warehouse=None, scale=None, fault=None) -> dict:
    """staging.payments: DECIMAL amounts (refunds negative), timestamps from epoch milliseconds."""
    query = f"""
        SELECT payment_id, order_id, {MONEY.format(col='amount')} AS amount,
               CASE WHEN {MONEY.format(col='amount')} < 0 THEN 'refund' ELSE 'capture' END AS kind,
               method, epoch_ms(paid_at_ms) AS paid_at
        FROM raw.payments {_latest('payment_id')}
        ORDER BY payment_id"""
    return _stage("staging.payments", ["raw.payments"], query, warehouse)


@service(after=["ingest_web_events"], tags=["staging", "web"], estimate=5.5, timeout=600, **COMMON)
def stage_sessions(*, warehouse=None, scale=None, fault=None) -> dict:
    """staging.sessions: tracker events deduplicated, normalised and cut into sessions.

    A visitor's next event more than SESSION_GAP_MINUTES after the previous one
    starts a new session. ``session_id`` is ``<visitor>-<n>``, n counting from 1
    in time order, so it is stable across rebuilds.
    """
    query = f"""
        WITH events AS (
          SELECT event_id, visitor_id, device, epoch_ms(ts_ms) AS event_at,
                 lower(replace(trim(event_type), '-', '_')) AS event_type
          FROM raw.web_events {_latest('event_id', '_received_at')}),
        marked AS (
          SELECT *, CASE WHEN event_at - lag(event_at) OVER w <= INTERVAL {SESSION_GAP_MINUTES} MINUTE
                         THEN 0 ELSE 1 END AS starts_session
          FROM events WINDOW w AS (PARTITION BY visitor_id ORDER BY event_at, event_id)),
        numbered AS (
          SELECT *, sum(starts_session) OVER (PARTITION BY visitor_id ORDER BY event_at, event_id
                                              ROWS UNBOUNDED PRECEDING) AS session_no
          FROM marked)
        SELECT visitor_id || '-' || session_no AS session_id, visitor_id,
               arg_min(device, event_at) AS device,
               min(event_at) AS started_at, max(event_at) AS ended_at, count(*) AS events,
               count(*) FILTER (event_type = 'page_view') AS page_views,
               count(*) FILTER (event_type = 'product_view') AS product_views,
               bool_or(event_type = 'add_to_cart') AS added_to_cart,
               bool_or(event_type = 'checkout') AS checked_out,
               bool_or(event_type = 'purchase') AS purchased
        FROM numbered
        GROUP BY visitor_id, session_no
        ORDER BY visitor_id, session_no"""
    return _stage("staging.sessions", ["raw.web_events"], query, warehouse)


@service(after=["ingest_inventory"], tags=["staging", "inventory"], estimate=0.2, timeout=120, **COMMON)
def stage_inventory(*, warehouse=None, scale=None, fault=None) -> dict:
    """staging.inventory: one snapshot per SKU, distribution centre and day, recounts applied."""
    query = f"""
        SELECT upper(trim(sku)) AS sku, warehouse_code, CAST(snapshot_date AS DATE) AS snapshot_date, on_hand
        FROM raw.inventory_snapshots {_latest('upper(trim(sku)), warehouse_code, snapshot_date')}
        ORDER BY sku, warehouse_code, snapshot_date"""
    return _stage("staging.inventory", ["raw.inventory_snapshots"], query, warehouse)
