"""Marts: the tables analysts ask for, built only from staging (and from each other).

Shared definitions, so two marts never disagree about the same number:

* **Revenue** is the sum of ``line_total`` over lines of orders whose status is
  in ``REVENUE_STATUSES``; cancelled and refunded orders earn nothing. Money
  stays ``DECIMAL`` end to end, so totals reconcile to the cent.
* **Recent demand** is units sold in the ``DEMAND_WINDOW_DAYS`` days ending on
  the as-of date, which ``mart_reorder_alerts`` turns into a reorder point:
  ``ceil(daily demand * LEAD_TIME_DAYS * SAFETY_FACTOR)``.
* **Funnel stages are cumulative**: a session "added to cart" only if it also
  viewed a product, and so on, so each stage counts a subset of the one before
  even when the tracker lost an event.

Every mart ends with ORDER BY on its key, so a rebuild writes the same file, and
counts are cast to BIGINT (DuckDB sums integers as HUGEINT, which Parquet would
store as a float).
"""
from __future__ import annotations

import logging

from orchestrator import service

from . import warehouse as wh
from .ingest import AS_OF, START

log = logging.getLogger(__name__)

REVENUE_STATUSES = ("completed", "shipped")
DEMAND_WINDOW_DAYS = 28
LEAD_TIME_DAYS = 7
SAFETY_FACTOR = 1.5
FUNNEL = ("sessions", "viewed_product", "added_to_cart", "checked_out", "purchased")
#: every mart table, in the order the analysts' snapshot lists them
TABLES = ("marts.daily_revenue", "marts.customer_ltv", "marts.cohort_retention",
          "marts.product_performance", "marts.reorder_alerts", "marts.funnel_conversion")

COMMON = dict(pool="warehouse", retries=1, retry_delay=1.0)
_EARNING = "status IN (" + ", ".join(f"'{s}'" for s in REVENUE_STATUSES) + ")"


def _mart(name: str, reads: list[str], query: str, warehouse) -> dict:
    base = wh.root(warehouse)
    with wh.sql(base, reads) as con:
        rows = wh.write(con, base, name, query)
    log.info("wrote %s rows to %s", f"{rows:,}", name)
    return {"table": name, "rows": rows}


@service(after=["stage_orders", "stage_order_lines"], tags=["mart", "sales", "finance"],
         estimate=0.2, timeout=300, **COMMON)
def mart_daily_revenue(*, warehouse=None, scale=None, fault=None) -> dict:
    """marts.daily_revenue: orders, units, revenue and average order value for every calendar day.

    Days run to the as-of date or to the newest order, whichever is later: a day of
    orders landed since (``ingest.land_orders``) shows its orders at once, and its
    units and revenue once its lines are staged (none yet: revenue 0, no average).
    """
    query = f"""
        WITH earning AS (SELECT order_id, order_date FROM staging.orders WHERE {_EARNING}),
        sold AS (
          SELECT e.order_date, l.quantity, l.line_total
          FROM earning e JOIN staging.order_lines l USING (order_id)),
        days AS (  -- every day appears, also one without orders, so charts have no gaps
          SELECT CAST(d AS DATE) AS day
          FROM range(DATE '{START}', greatest(DATE '{AS_OF}', (SELECT max(order_date) FROM staging.orders)) + 1,
                     INTERVAL 1 DAY) t(d)),
        per_day AS (SELECT order_date AS day, count(*) AS orders FROM earning GROUP BY order_date),
        sales AS (
          SELECT order_date AS day, sum(quantity)::BIGINT AS units, sum(line_total) AS revenue
          FROM sold GROUP BY order_date)
        SELECT day, coalesce(orders, 0) AS orders, coalesce(units, 0) AS units,
               coalesce(revenue, 0)::DECIMAL(18,2) AS revenue,
               CASE WHEN orders > 0 THEN round(revenue / orders, 2) END AS avg_order_value
        FROM days LEFT JOIN per_day USING (day) LEFT JOIN sales USING (day)
        ORDER BY day"""
    return _mart("marts.daily_revenue", ["staging.orders", "staging.order_lines"], query, warehouse)


@service(after=["stage_customers", "stage_orders", "stage_order_lines", "stage_payments"],
         tags=["mart", "customers", "finance"], estimate=0.5, timeout=300, **COMMON)
def mart_customer_ltv(*, warehouse=None, scale=None, fault=None) -> dict:
    """marts.customer_ltv: per customer, orders, revenue, net payments and first/last order.

    ``net_paid`` (captures minus refunds) should equal ``revenue`` for every
    customer; a difference is money the payment provider and the shop disagree on.
    """
    query = f"""
        WITH earned AS (
          SELECT o.customer_id, count(DISTINCT o.order_id) AS orders, sum(l.line_total) AS revenue,
                 min(o.ordered_at) AS first_order_at, max(o.ordered_at) AS last_order_at
          FROM staging.orders o JOIN staging.order_lines l USING (order_id)
          WHERE o.{_EARNING} GROUP BY o.customer_id),
        paid AS (
          SELECT o.customer_id, sum(p.amount) AS net_paid
          FROM staging.payments p JOIN staging.orders o USING (order_id) GROUP BY o.customer_id)
        SELECT c.customer_id, c.country, c.signup_date,
               coalesce(e.orders, 0) AS orders,
               coalesce(e.revenue, 0)::DECIMAL(18,2) AS revenue,
               coalesce(p.net_paid, 0)::DECIMAL(18,2) AS net_paid,
               CASE WHEN e.orders > 0 THEN round(e.revenue / e.orders, 2) END AS avg_order_value,
               e.first_order_at, e.last_order_at,
               CAST(date_trunc('month', e.first_order_at) AS DATE) AS cohort_month
        FROM staging.customers c LEFT JOIN earned e USING (customer_id) LEFT JOIN paid p USING (customer_id)
        ORDER BY c.customer_id"""
    reads = ["staging.customers", "staging.orders", "staging.order_lines", "staging.payments"]
    return _mart("marts.customer_ltv", reads, query, warehouse)


@service(after=["stage_orders"], tags=["mart", "customers"], estimate=0.15, timeout=300, **COMMON)
def mart_cohort_retention(*, warehouse=None, scale=None, fault=None) -> dict:
    """marts.cohort_retention: share of each first-purchase-month cohort buying again k months later."""
    query = f"""
        WITH active AS (
          SELECT DISTINCT customer_id, CAST(date_trunc('month', order_date) AS DATE) AS month
          FROM staging.orders WHERE {_EARNING} AND customer_id IS NOT NULL),
        first AS (SELECT customer_id, min(month) AS cohort_month FROM active GROUP BY customer_id),
        size AS (SELECT cohort_month, count(*) AS cohort_size FROM first GROUP BY cohort_month)
        SELECT f.cohort_month, datediff('month', f.cohort_month, a.month) AS months_since,
               s.cohort_size, count(*) AS active_customers,
               round(count(*) / s.cohort_size, 4) AS retention
        FROM active a JOIN first f USING (customer_id) JOIN size s USING (cohort_month)
        GROUP BY f.cohort_month, months_since, s.cohort_size
        ORDER BY f.cohort_month, months_since"""
    return _mart("marts.cohort_retention", ["staging.orders"], query, warehouse)


@service(after=["stage_products", "stage_orders", "stage_order_lines"], tags=["mart", "sales", "catalog"],
         estimate=0.35, timeout=300, **COMMON)
def mart_product_performance(*, warehouse=None, scale=None, fault=None) -> dict:
    """marts.product_performance: per product, all-time and recent units and revenue, rank in category."""
    query = f"""
        WITH sold AS (
          SELECT l.product_id, l.order_id, l.quantity, l.line_total,
                 o.order_date > DATE '{AS_OF}' - {DEMAND_WINDOW_DAYS} AS recent
          FROM staging.order_lines l JOIN staging.orders o USING (order_id) WHERE o.{_EARNING}),
        per_product AS (
          SELECT product_id, count(DISTINCT order_id) AS orders, sum(quantity)::BIGINT AS units,
                 sum(line_total) AS revenue,
                 coalesce(sum(quantity) FILTER (recent), 0)::BIGINT AS units_recent,
                 coalesce(sum(line_total) FILTER (recent), 0) AS revenue_recent
          FROM sold GROUP BY product_id)
        SELECT p.product_id, p.sku, p.name, p.category, p.list_price,
               coalesce(s.orders, 0) AS orders, coalesce(s.units, 0) AS units,
               coalesce(s.revenue, 0)::DECIMAL(18,2) AS revenue,
               coalesce(s.units_recent, 0) AS units_{DEMAND_WINDOW_DAYS}d,
               coalesce(s.revenue_recent, 0)::DECIMAL(18,2) AS revenue_{DEMAND_WINDOW_DAYS}d,
               rank() OVER (PARTITION BY p.category ORDER BY coalesce(s.revenue, 0) DESC) AS category_rank
        FROM staging.products p LEFT JOIN per_product s USING (product_id)
        ORDER BY p.product_id"""
    reads = ["staging.products", "staging.orders", "staging.order_lines"]
    return _mart("marts.product_performance", reads, query, warehouse)


@service(after=["stage_inventory", "mart_product_performance"], tags=["mart", "inventory"],
         estimate=0.05, timeout=120, **COMMON)
def mart_reorder_alerts(*, warehouse=None, scale=None, fault=None) -> dict:
    """marts.reorder_alerts: products whose stock on the latest snapshot is below their reorder point.

    Stock is summed over distribution centres; the suggested order tops it up to
    two lead times of demand. Most urgent (fewest days of cover) first.
    """
    query = f"""
        WITH stock AS (
          SELECT sku, sum(on_hand)::BIGINT AS on_hand FROM staging.inventory
          WHERE snapshot_date = (SELECT max(snapshot_date) FROM staging.inventory) GROUP BY sku),
        demand AS (
          SELECT product_id, sku, name, category,
                 units_{DEMAND_WINDOW_DAYS}d / {DEMAND_WINDOW_DAYS} AS daily_units,
                 ceil(units_{DEMAND_WINDOW_DAYS}d * {LEAD_TIME_DAYS * SAFETY_FACTOR} / {DEMAND_WINDOW_DAYS})::BIGINT
                   AS reorder_point
          FROM marts.product_performance)
        SELECT d.product_id, d.sku, d.name, d.category, s.on_hand, d.reorder_point,
               round(d.daily_units, 2) AS daily_units,
               round(s.on_hand / d.daily_units, 1) AS days_of_cover,
               greatest(0, ceil(d.daily_units * {2 * LEAD_TIME_DAYS}) - s.on_hand)::BIGINT AS suggested_order
        FROM demand d JOIN stock s USING (sku)
        WHERE s.on_hand < d.reorder_point
        ORDER BY days_of_cover, d.product_id"""
    return _mart("marts.reorder_alerts", ["staging.inventory", "marts.product_performance"], query, warehouse)


@service(after=["stage_sessions"], tags=["mart", "web"], estimate=0.1, timeout=300, **COMMON)
def mart_funnel_conversion(*, warehouse=None, scale=None, fault=None) -> dict:
    """marts.funnel_conversion: sessions reaching each funnel stage, per ISO week and device."""
    query = """
        SELECT CAST(date_trunc('week', started_at) AS DATE) AS week, device,
               count(*) AS sessions,
               count(*) FILTER (product_views > 0) AS viewed_product,
               count(*) FILTER (product_views > 0 AND added_to_cart) AS added_to_cart,
               count(*) FILTER (product_views > 0 AND added_to_cart AND checked_out) AS checked_out,
               count(*) FILTER (product_views > 0 AND added_to_cart AND checked_out AND purchased) AS purchased,
               round(count(*) FILTER (product_views > 0 AND added_to_cart AND checked_out AND purchased)
                     / count(*), 4) AS conversion
        FROM staging.sessions
        GROUP BY week, device
        ORDER BY week, device"""
    return _mart("marts.funnel_conversion", ["staging.sessions"], query, warehouse)
