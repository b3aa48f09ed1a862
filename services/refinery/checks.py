"""Quality checks: services that pass silently or raise ``QualityCheckFailed``.

A check is a service like any other, so a failure is an ordinary failed
service: the orchestrator skips everything downstream of it, which is why the
publish services run *after* the checks. Each check examines every table it is
responsible for and raises once, listing every failure (table, check, offending
count), so one run tells the whole story.

What is checked, all on staging:

* ``check_row_counts``: staging kept exactly one row per distinct raw key
  (nothing lost, no duplicates left); every staged table has rows.
* ``check_not_null_keys``: primary and foreign key columns hold no NULLs.
* ``check_referential_integrity``: every non-NULL foreign key has its parent
  (a NULL key is the not-null check's business, not an orphan).
* ``check_freshness``: the newest row of each time-stamped table is at most
  ``FRESHNESS_HOURS`` older than the end of the as-of day. The data is
  synthetic, so "now" is the refresh's as-of date, not the wall clock.

Checks never retry: the data will not change between attempts, so a retry only
delays the verdict.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from orchestrator import service

from . import warehouse as wh
from .ingest import AS_OF

log = logging.getLogger(__name__)

COMMON = dict(pool="warehouse", retries=0, timeout=300, tags=["check"])
FRESHNESS_HOURS = 24

#: staged table -> (raw table, the raw key that staging deduplicates on)
ROW_COUNTS = {
    "staging.customers": ("raw.customers", "customer_id"),
    "staging.products": ("raw.products", "product_id"),
    "staging.orders": ("raw.orders", "order_id"),
    "staging.order_lines": ("raw.order_lines", "line_id"),
    "staging.payments": ("raw.payments", "payment_id"),
    "staging.inventory": ("raw.inventory_snapshots", "upper(trim(sku)), warehouse_code, snapshot_date"),
}
#: staged table -> its key columns (primary first, then foreign)
KEYS = {
    "staging.customers": ("customer_id",),
    "staging.products": ("product_id", "sku"),
    "staging.orders": ("order_id", "customer_id"),
    "staging.order_lines": ("line_id", "order_id", "product_id"),
    "staging.payments": ("payment_id", "order_id"),
    "staging.sessions": ("session_id", "visitor_id"),
    "staging.inventory": ("sku", "warehouse_code", "snapshot_date"),
}
#: (child table, column, parent table, column)
RELATIONS = (
    ("staging.orders", "customer_id", "staging.customers", "customer_id"),
    ("staging.order_lines", "order_id", "staging.orders", "order_id"),
    ("staging.order_lines", "product_id", "staging.products", "product_id"),
    ("staging.payments", "order_id", "staging.orders", "order_id"),
    ("staging.inventory", "sku", "staging.products", "sku"),
)
#: table -> the column whose newest value says how fresh it is
FRESHNESS = {
    "staging.orders": "ordered_at",
    "staging.sessions": "started_at",
    "staging.inventory": "snapshot_date",
}


def _builders(tables) -> list[str]:
    """The staging services a check must wait for: ``staging.X`` is built by ``stage_X``."""
    return sorted({"stage_" + t.split(".", 1)[1] for t in tables})


@dataclass(frozen=True)
class Failure:
    table: str
    check: str
    count: int  # offending rows (or hours, for freshness)
    detail: str

    def __str__(self) -> str:
        return f"{self.table} {self.check}: {self.detail}"


class QualityCheckFailed(Exception):
    """One or more data-quality checks failed; ``failures`` lists each (table, check, count)."""

    def __init__(self, failures):
        self.failures = tuple(failures)
        n = len(self.failures)
        lines = "\n".join(f"  - {f}" for f in self.failures)
        tables = sorted({f.table for f in self.failures}) or ["staging.<table>"]
        fix = (f"Nothing is published until this passes: fix the source or the staging service behind "
               f"{', '.join(tables)}, then rerun from there (e.g. --select stage_{tables[0].split('.', 1)[1]}+)")
        super().__init__(f"{n} quality check{'s' if n != 1 else ''} failed:\n{lines}\n{fix}")

    # Exceptions pickle as cls(*args); args holds the message, not the failures,
    # so without this a worker process could not send the error back intact.
    def __reduce__(self):
        return (type(self), (self.failures,))

    @property
    def table(self) -> str:
        return self.failures[0].table

    @property
    def check(self) -> str:
        return self.failures[0].check

    @property
    def count(self) -> int:
        return self.failures[0].count


def _verdict(name: str, failures: list[Failure], examined: int) -> dict:
    if failures:
        raise QualityCheckFailed(sorted(failures, key=lambda f: (f.table, f.check)))
    log.info("%s passed on %d tables", name, examined)
    return {"check": name, "tables": examined, "failures": 0}


@service(after=_builders([*ROW_COUNTS, "staging.sessions"]), estimate=1.1, **COMMON)
def check_row_counts(*, warehouse=None, scale=None, fault=None) -> dict:
    """Staged rows equal the distinct keys of the source; sessions account for every distinct event."""
    base = wh.root(warehouse)
    reads = sorted(set(ROW_COUNTS) | {raw for raw, _ in ROW_COUNTS.values()}
                   | {"staging.sessions", "raw.web_events"})
    failures = []
    with wh.sql(base, reads) as con:
        pairs = [(t, raw, f"SELECT count(*) FROM (SELECT DISTINCT {key} FROM {raw})", f"distinct {key}")
                 for t, (raw, key) in ROW_COUNTS.items()]
        pairs.append(("staging.sessions", "raw.web_events", "SELECT count(DISTINCT event_id) FROM raw.web_events",
                      "distinct event_id (sum of sessions.events)"))
        for table, raw, source_sql, what in pairs:
            staged_sql = ("SELECT coalesce(sum(events), 0) FROM staging.sessions" if table == "staging.sessions"
                          else f"SELECT count(*) FROM {table}")
            staged = con.execute(staged_sql).fetchone()[0]
            expected = con.execute(source_sql).fetchone()[0]
            if staged != expected or staged == 0:
                failures.append(Failure(table, "row_count", abs(expected - staged) or 1,
                                        f"{staged:,} staged rows, {raw} has {expected:,} {what}"))
    return _verdict("check_row_counts", failures, len(pairs))


@service(after=_builders(KEYS), estimate=0.2, **COMMON)
def check_not_null_keys(*, warehouse=None, scale=None, fault=None) -> dict:
    """No NULL in any key column of a staged table."""
    base = wh.root(warehouse)
    failures = []
    with wh.sql(base, list(KEYS)) as con:
        for table, columns in KEYS.items():
            counts = con.execute(
                "SELECT " + ", ".join(f"count(*) FILTER ({c} IS NULL)" for c in columns) + f" FROM {table}"
            ).fetchone()
            for column, nulls in zip(columns, counts, strict=True):
                if nulls:
                    failures.append(Failure(table, f"not_null({column})", nulls,
                                            f"{nulls:,} rows have NULL {column}"))
    return _verdict("check_not_null_keys", failures, len(KEYS))


@service(after=_builders(t for r in RELATIONS for t in (r[0], r[2])), estimate=0.5, **COMMON)
def check_referential_integrity(*, warehouse=None, scale=None, fault=None) -> dict:
    """Every non-NULL foreign key in staging points at an existing parent row."""
    base = wh.root(warehouse)
    reads = sorted({t for child, _, parent, _ in RELATIONS for t in (child, parent)})
    failures = []
    with wh.sql(base, reads) as con:
        for child, column, parent, parent_column in RELATIONS:
            orphans, example = con.execute(f"""
                SELECT count(*), min(c.{column}) FROM {child} c
                WHERE c.{column} IS NOT NULL
                  AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE p.{parent_column} = c.{column})""").fetchone()
            if orphans:
                failures.append(Failure(
                    child, f"references({column} -> {parent}.{parent_column})", orphans,
                    f"{orphans:,} rows reference a missing {parent} row (e.g. {column}={example!r})"))
    return _verdict("check_referential_integrity", failures, len(RELATIONS))


@service(after=_builders(FRESHNESS), estimate=0.05, **COMMON)
def check_freshness(*, warehouse=None, scale=None, fault=None) -> dict:
    """The newest row of each time-stamped table is within FRESHNESS_HOURS of the as-of date's end."""
    base = wh.root(warehouse)
    failures = []
    with wh.sql(base, list(FRESHNESS)) as con:
        for table, column in FRESHNESS.items():
            newest, lag = con.execute(f"""
                SELECT max({column}),
                       datediff('hour', max({column})::TIMESTAMP, DATE '{AS_OF}' + INTERVAL 1 DAY)
                FROM {table}""").fetchone()
            if newest is None:
                failures.append(Failure(table, f"freshness({column})", 0, "the table has no rows"))
            elif lag > FRESHNESS_HOURS:
                failures.append(Failure(
                    table, f"freshness({column})", lag,
                    f"newest {column} is {newest}, {lag} hours before the end of {AS_OF} "
                    f"(allowed: {FRESHNESS_HOURS})"))
    return _verdict("check_freshness", failures, len(FRESHNESS))
