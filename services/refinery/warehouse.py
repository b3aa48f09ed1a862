"""The refinery's storage: one Parquet file per table under one root folder, DuckDB for SQL.

Why this shape
--------------
Services run in separate worker processes, several at the same time. A single
database file would need one writer at a time (DuckDB locks its file per
process), so there is none: every table is one Parquet file written by exactly
one service and read by any number of others. Each call opens its own
*in-memory* DuckDB connection and sees the tables it asked for as views over
those files, so two services never share a connection, a lock or a cache.

Atomic appearance
-----------------
DuckDB runs the query and pyarrow writes its Arrow stream to a hidden
temporary file in the *same directory*, which is then ``os.replace``-d onto
the final name. The rename is atomic within one file
system, so a reader sees the previous complete file or the new complete file,
never a half-written one, and a failed write leaves the previous table intact
and no temporary file behind. Same-directory matters: a temp file elsewhere
could be on another file system, where a rename is a copy. Any failure while
building a table surfaces as one ``WarehouseError`` naming the table.

Layout::

    <root>/raw/<table>.parquet        what ingest produced, messy on purpose
    <root>/staging/<table>.parquet    typed, deduplicated, cleaned
    <root>/marts/<table>.parquet      what analysts ask for
    <root>/publish/...                the analysts' snapshot and the HTML summary

Tables are named ``layer.table`` everywhere (``staging.orders``), which is also
the name a service uses in SQL.

Knobs, read at call time
------------------------
Every service accepts ``warehouse=``, ``scale=`` and ``fault=`` keyword
arguments; each defaults to None, meaning "use the environment variable"
(``CRITPATH_WAREHOUSE``, ``CRITPATH_SCALE``, ``CRITPATH_FAULT``). They are read
when the service runs, not at import, because a worker process imports the
module once and may run many refreshes, and because tests set them per test.
Only ingest uses ``scale``, and only the services that plant a fault use
``fault``; every service still accepts all three, so one set of ``params``
(or one environment) serves the whole graph.
"""
from __future__ import annotations

import contextlib
import difflib
import math
import os
from pathlib import Path
from typing import Iterator

import duckdb
import pyarrow.parquet as pq

from orchestrator.support.files import atomic_path

ENV_ROOT = "CRITPATH_WAREHOUSE"
ENV_SCALE = "CRITPATH_SCALE"
ENV_FAULT = "CRITPATH_FAULT"
DEFAULT_ROOT = ".critpath/warehouse"
LAYERS = ("raw", "staging", "marts")
BATCH_ROWS = 1 << 20  # rows per Arrow batch and so per Parquet row group

#: Deliberate, deterministic defects for testing the quality checks. Each names
#: the service that plants it and the check that should catch it.
FAULTS = {
    "orphan_order_lines": "ingest_order_lines adds lines whose order_id does not exist "
                          "(check_referential_integrity fails)",
    "null_customer_keys": "ingest_orders leaves customer_id NULL on some orders "
                          "(check_not_null_keys fails)",
    "stale_orders": "ingest_orders stops ten days before the as-of date (check_freshness fails)",
    "dropped_order_lines": "stage_order_lines loses some lines while cleaning (check_row_counts fails)",
}


class WarehouseError(Exception):
    """A knob or a table is not as a service needs it; the message says how to fix it."""


# -- knobs -------------------------------------------------------------------
def root(warehouse: str | os.PathLike | None = None) -> Path:
    """The warehouse root: the ``warehouse=`` argument, else $CRITPATH_WAREHOUSE, else the default.

    Made absolute so log lines say exactly where data went (a worker's current
    directory is not always the one the run was started from).
    """
    value = warehouse if warehouse is not None else os.environ.get(ENV_ROOT) or DEFAULT_ROOT
    return Path(value).expanduser().absolute()


def scale(value: float | str | None = None) -> float:
    """The size factor: the ``scale=`` argument, else $CRITPATH_SCALE, else 1.0."""
    source = "scale=" if value is not None else ENV_SCALE
    raw = value if value is not None else os.environ.get(ENV_SCALE) or 1.0
    try:
        factor = float(raw)
    except (TypeError, ValueError):
        factor = math.nan
    if not math.isfinite(factor) or factor <= 0:
        raise WarehouseError(f"{source} is {raw!r}: it must be a positive number such as 1.0 or 0.01")
    return factor


def faults(value: str | None = None) -> frozenset[str]:
    """The injected faults: the ``fault=`` argument, else $CRITPATH_FAULT; comma-separated names.

    An unknown name is an error rather than a silent no-op, so a typo cannot
    make a fault-injection test pass for the wrong reason.
    """
    source = "fault=" if value is not None else ENV_FAULT
    raw = value if value is not None else os.environ.get(ENV_FAULT, "")
    names = frozenset(n.strip() for n in str(raw).split(",") if n.strip())
    unknown = sorted(names - FAULTS.keys())
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, FAULTS, n=1)
            hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise WarehouseError(
            f"{source} names unknown fault{'s' if len(unknown) > 1 else ''} {', '.join(hints)}; "
            f"known faults: {', '.join(sorted(FAULTS))}"
        )
    return names


# -- paths -------------------------------------------------------------------
def table_path(base: Path, name: str) -> Path:
    """``staging.orders`` -> ``<base>/staging/orders.parquet``."""
    layer, _, table = name.partition(".")
    if layer not in LAYERS or not table.isidentifier():
        raise WarehouseError(
            f"table name {name!r} must be 'layer.table' with layer one of {', '.join(LAYERS)}, "
            f"e.g. 'staging.orders'"
        )
    return base / layer / f"{table}.parquet"


# -- reading and writing -----------------------------------------------------
def require(base: Path, names) -> None:
    """Fail, naming every missing table and where it was looked for, unless all ``names`` exist."""
    missing = [name for name in names if not table_path(base, name).exists()]
    if missing:
        raise WarehouseError(
            f"missing input table{'s' if len(missing) > 1 else ''} "
            + ", ".join(f"{m!r} ({table_path(base, m)})" for m in missing)
            + f" under warehouse {str(base)!r}: run the services that build "
            f"{'them' if len(missing) > 1 else 'it'} first, or run the whole refresh"
        )


@contextlib.contextmanager
def sql(base: Path, reads: tuple[str, ...] | list[str] = ()) -> Iterator[duckdb.DuckDBPyConnection]:
    """A fresh in-memory DuckDB connection where each table in ``reads`` is a view.

    Naming the inputs up front means a missing upstream table is reported once,
    by name, with the service to run, instead of as a DuckDB catalog error
    halfway through a query.
    """
    require(base, reads)
    con = duckdb.connect(":memory:")
    try:
        # no progress bar: it would write terminal escapes into every worker's log
        con.execute("SET enable_progress_bar = false")
        for layer in LAYERS:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {layer}")
        for name in reads:
            path = str(table_path(base, name)).replace("'", "''")
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{path}')")
        yield con
    finally:
        con.close()


def write(con: duckdb.DuckDBPyConnection, base: Path, name: str, query: str) -> int:
    """Write the result of ``query`` as table ``name`` atomically; return the row count."""
    final = table_path(base, name)
    rows = 0
    with atomic_path(final) as tmp:
        # Streamed through Arrow rather than DuckDB's ``COPY ... TO``: with DuckDB
        # 2.0.0, a COPY whose query raises part-way (a failed CAST on bad data)
        # now and then never returns (stuck in TaskExecutor::DrainTasks), which
        # would turn a clean service failure into a hang until the timeout.
        try:
            relation = con.sql(query)
            # to_arrow_reader is the current name; older DuckDB releases only have fetch_arrow_reader
            to_reader = getattr(relation, "to_arrow_reader", None) or relation.fetch_arrow_reader
            reader = to_reader(BATCH_ROWS)
            with pq.ParquetWriter(tmp, reader.schema, compression="zstd") as out:
                for batch in reader:
                    out.write_batch(batch)
                    rows += batch.num_rows
        except Exception as e:
            # one error type whichever layer failed: DuckDB raises its own for the
            # first batch, the Arrow stream an OSError for a later one
            raise WarehouseError(
                f"could not build {name!r} ({final}): {type(e).__name__}: {' '.join(str(e).split())}; "
                "the previous version of the table, if any, is unchanged"
            ) from e
    return rows


def write_bytes(final: Path, data: bytes) -> Path:
    """Write a whole file (HTML, a report) atomically."""
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)
    return final
