"""Publish: hand the marts to people, only after every quality check has passed.

Two outputs under ``<root>/publish/``:

* ``marts.duckdb``: a DuckDB database with one table per mart plus
  ``refresh_info`` (as-of date, row counts), so an analyst opens one file.
  It is built at a temporary path and renamed into place, so someone with the
  previous snapshot open keeps reading a complete file.
* ``summary.html``: one self-contained page (inline CSS, no scripts, no
  external links) with the headline numbers and a few small tables.

Both run after all checks (a failed check skips them) and after all marts.
Their content depends only on the marts, never on the clock, so a rebuild of
the same data publishes the same page.
"""
from __future__ import annotations

import contextlib
import html
import logging
from decimal import Decimal

import duckdb

from orchestrator import service

from . import warehouse as wh
from .ingest import AS_OF
from .marts import FUNNEL, TABLES

log = logging.getLogger(__name__)

AFTER = ["mart_daily_revenue", "mart_customer_ltv", "mart_cohort_retention", "mart_product_performance",
         "mart_reorder_alerts", "mart_funnel_conversion",
         "check_row_counts", "check_not_null_keys", "check_referential_integrity", "check_freshness"]
COMMON = dict(after=AFTER, pool="warehouse", retries=1, retry_delay=1.0, timeout=300)
SNAPSHOT = "publish/marts.duckdb"
SUMMARY = "publish/summary.html"


@service(tags=["publish", "analysts"], estimate=0.2, **COMMON)
def publish_snapshot(*, warehouse=None, scale=None, fault=None) -> dict:
    """publish/marts.duckdb: every mart as a table, for analysts to open directly."""
    base = wh.root(warehouse)
    wh.require(base, TABLES)
    final = base / SNAPSHOT
    counts = {}
    with wh.atomic_path(final) as tmp:
        try:
            con = duckdb.connect(str(tmp))
            try:
                for name in TABLES:
                    table = name.split(".", 1)[1]
                    path = str(wh.table_path(base, name)).replace("'", "''")
                    con.execute(f"CREATE TABLE {table} AS SELECT * FROM read_parquet('{path}')")
                    counts[table] = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                con.execute("CREATE TABLE refresh_info (as_of DATE, table_name VARCHAR, row_count BIGINT)")
                con.executemany("INSERT INTO refresh_info VALUES (?, ?, ?)",
                                [(AS_OF, t, n) for t, n in counts.items()])
            finally:
                con.close()  # checkpoints, so the file is complete before the rename
        finally:
            # a failed build can leave DuckDB's write-ahead log beside the temp file
            with contextlib.suppress(FileNotFoundError):
                tmp.with_name(tmp.name + ".wal").unlink()
    log.info("published %d marts (%s rows) to %s", len(counts), f"{sum(counts.values()):,}", final)
    return {"path": str(final), "tables": counts}


# -- the HTML summary ----------------------------------------------------------
def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, (Decimal, float)):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(caption: str, headers: list[str], rows) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><caption>{html.escape(caption)}</caption><tr>{head}</tr>{body}</table>"


def _percent(share) -> str:
    return "–" if share is None else f"{100 * float(share):.1f}%"


STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}
.kpis{display:flex;flex-wrap:wrap;gap:1em;margin-bottom:1.5em}
.kpi{border:1px solid #ddd;border-radius:6px;padding:.6em 1em;min-width:9em}
.kpi b{display:block;font-size:1.4em}
table{border-collapse:collapse;margin:0 2em 2em 0;display:inline-table;vertical-align:top}
caption{text-align:left;font-weight:600;padding-bottom:.3em}
th,td{border-bottom:1px solid #eee;padding:.25em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}"""


def _summary_html(con) -> str:
    one = lambda q: con.execute(q).fetchone()
    revenue, orders = one("SELECT sum(revenue), sum(orders) FROM marts.daily_revenue")
    buyers = one("SELECT count(*) FROM marts.customer_ltv WHERE orders > 0")[0]
    funnel = one("SELECT " + ", ".join(f"sum({s})" for s in FUNNEL) + " FROM marts.funnel_conversion")
    alerts = one("SELECT count(*) FROM marts.reorder_alerts")[0]
    kpis = [
        ("Revenue", _fmt(revenue)), ("Orders", _fmt(orders)), ("Customers who bought", _fmt(buyers)),
        ("Average order", _fmt(revenue / orders) if orders else "–"),
        ("Sessions", _fmt(funnel[0])), ("Conversion", _percent(funnel[-1] / funnel[0] if funnel[0] else None)),
        ("Reorder alerts", _fmt(alerts)),
    ]
    sections = [
        _table("Revenue by month", ["month", "orders", "units", "revenue"], con.execute("""
            SELECT strftime(day, '%Y-%m'), sum(orders)::BIGINT, sum(units)::BIGINT, sum(revenue)
            FROM marts.daily_revenue GROUP BY 1 ORDER BY 1""").fetchall()),
        _table("Funnel", ["stage", "sessions", "of previous", "of all"],
               [(stage, n, _percent(n / prev if prev else None), _percent(n / funnel[0] if funnel[0] else None))
                for stage, n, prev in zip(FUNNEL, funnel, (funnel[0],) + tuple(funnel[:-1]), strict=True)]),
        _table("Top products by revenue", ["sku", "name", "units", "revenue"], con.execute("""
            SELECT sku, name, units, revenue FROM marts.product_performance
            ORDER BY revenue DESC, product_id LIMIT 10""").fetchall()),
        _table("Most urgent reorders", ["sku", "name", "on hand", "reorder point", "days of cover"], con.execute("""
            SELECT sku, name, on_hand, reorder_point, days_of_cover FROM marts.reorder_alerts
            ORDER BY days_of_cover, product_id LIMIT 10""").fetchall()),
        _table("Customers by country", ["country", "customers", "buyers", "revenue per buyer"], con.execute("""
            SELECT country, count(*), count(*) FILTER (orders > 0),
                   sum(revenue) / nullif(count(*) FILTER (orders > 0), 0)
            FROM marts.customer_ltv GROUP BY country ORDER BY count(*) DESC, country""").fetchall()),
    ]
    months = range(7)
    cohorts = con.execute(f"""
        SELECT strftime(cohort_month, '%Y-%m'), any_value(cohort_size),
               {', '.join(f'max(retention) FILTER (months_since = {m})' for m in months)}
        FROM marts.cohort_retention GROUP BY cohort_month ORDER BY cohort_month LIMIT 6""").fetchall()
    sections.append(_table("Cohort retention (first purchase month)", ["cohort", "size"] + [f"+{m}" for m in months],
                           [(c, size, *(_percent(r) for r in rs)) for c, size, *rs in cohorts]))
    kpi_html = "".join(f'<div class="kpi">{html.escape(k)}<b>{html.escape(v)}</b></div>' for k, v in kpis)
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>Refinery summary {AS_OF}</title>"
            f"<style>{STYLE}</style></head><body><h1>Refinery summary, as of {AS_OF}</h1>"
            f"<div class=\"kpis\">{kpi_html}</div>{''.join(sections)}</body></html>\n")


@service(tags=["publish", "report"], estimate=0.05, **COMMON)
def publish_summary_html(*, warehouse=None, scale=None, fault=None) -> dict:
    """publish/summary.html: headline numbers and small tables of the marts, one self-contained page."""
    base = wh.root(warehouse)
    with wh.sql(base, TABLES) as con:
        page = _summary_html(con)
    final = wh.write_bytes(base / SUMMARY, page.encode("utf-8"))
    log.info("published the summary (%s bytes) to %s", f"{len(page):,}", final)
    return {"path": str(final), "bytes": len(page)}
