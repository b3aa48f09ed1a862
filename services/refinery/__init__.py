"""The refinery: a nightly refresh for a small online retailer, as 26 data services.

Load this one module (``services.refinery``) to get every service::

    ingest (7)  raw sources, generated deterministically        ingest.py
    staging (7) typed, deduplicated, cleaned; web events -> sessions  staging.py
    marts (6)   revenue, LTV, cohorts, products, reorders, funnel  marts.py
    checks (4)  row counts, not-null keys, references, freshness   checks.py
    publish (2) DuckDB snapshot + HTML summary, after all checks   publish.py

Each service is an ordinary function that knows nothing of schedules or of the
other services: it reads tables, writes one, and returns a small summary dict.
Dependencies are declared with ``@service(after=[...])``; they mirror which
tables a function reads. All services share the ``warehouse`` pool (``POOLS``),
which caps how many run against the warehouse at once.

The longest chain is the web one (ingest_web_events -> stage_sessions ->
mart_funnel_conversion -> publish): sessionizing millions of events dominates.

Every service takes the same keyword arguments, each defaulting to its
environment variable (see ``warehouse.py``): ``warehouse=`` ($CRITPATH_WAREHOUSE),
``scale=`` ($CRITPATH_SCALE) and ``fault=`` ($CRITPATH_FAULT).
"""
from __future__ import annotations

from . import checks, ingest, marts, publish, staging, warehouse
from .checks import (
                     Failure,
                     QualityCheckFailed,
                     check_freshness,
                     check_not_null_keys,
                     check_referential_integrity,
                     check_row_counts,
)
from .ingest import (
                     ingest_customers,
                     ingest_inventory,
                     ingest_order_lines,
                     ingest_orders,
                     ingest_payments,
                     ingest_products,
                     ingest_web_events,
)
from .marts import (
                     mart_cohort_retention,
                     mart_customer_ltv,
                     mart_daily_revenue,
                     mart_funnel_conversion,
                     mart_product_performance,
                     mart_reorder_alerts,
)
from .publish import publish_snapshot, publish_summary_html
from .staging import (
                     stage_customers,
                     stage_inventory,
                     stage_order_lines,
                     stage_orders,
                     stage_payments,
                     stage_products,
                     stage_sessions,
)
from .warehouse import FAULTS, WarehouseError

POOLS = {"warehouse": 4}

#: every service, in an order where each comes after everything it depends on
SERVICES = [
    ingest_customers, ingest_products, ingest_orders, ingest_order_lines, ingest_payments,
    ingest_web_events, ingest_inventory,
    stage_customers, stage_products, stage_orders, stage_order_lines, stage_payments,
    stage_sessions, stage_inventory,
    mart_daily_revenue, mart_customer_ltv, mart_cohort_retention, mart_product_performance,
    mart_reorder_alerts, mart_funnel_conversion,
    check_row_counts, check_not_null_keys, check_referential_integrity, check_freshness,
    publish_snapshot, publish_summary_html,
]

__all__ = ["POOLS", "SERVICES", "FAULTS", "Failure", "QualityCheckFailed", "WarehouseError",
           "checks", "ingest", "marts", "publish", "staging", "warehouse",
           *(f.__name__ for f in SERVICES)]
