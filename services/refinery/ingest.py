"""Ingest: the seven raw sources of a small online retailer, generated, not downloaded.

Each ingest service stands in for an extract from one operational system (the
shop database, the payment provider, the web tracker, the warehouse system) and
writes one ``raw.*`` table. The data is *generated* so the refinery runs with no
network and no fixtures, and it is generated **deterministically**: every value
is a function of a row key and a salt through DuckDB's ``hash()``, never of a
random generator, thread schedule or clock. The same scale therefore yields the
same rows, and since every query's output order is fixed, byte-identical files.

Sources agree with each other the way real ones do, without reading each other
(so all seven can run at once): an order's day, customer and status are macros
of its id, and the payment provider derives each order's total from the same
line macros the shop uses. Customers sign up over time and an order only picks a
customer who had signed up by then, so cohorts and retention look plausible.

Raw data is messy on purpose, for staging to clean: re-sent duplicate rows with
a later ``_ingested_at``, inconsistent casing and whitespace, amounts as text in
several formats ("$12.50", "12,50", "12.50 USD"), two timestamp formats, epoch
milliseconds from the tracker, and ~2% of tracker events lost.

Sizes are ``BASE`` rows times the scale (``scale=`` or $CRITPATH_SCALE), never
below ``MINIMUM`` so tiny test scales still have every kind of row.

Orders are also an incremental source. The shop's feed drops each newer day of
orders into ``<warehouse>/landing/orders/<YYYY-MM-DD>.parquet`` (``land_orders``
makes one, as the feed would), and ``ingest_orders`` appends every landed day to
the generated year. The raw table is always the year plus each landed day once,
so a rerun never appends a day twice, a full refresh and an event-triggered
``ingest_orders+`` build the same tables, and with nothing landed the table is
byte for byte what it was before landings existed. Only the orders' side is
refreshed: the other sources, and the web sessions above all, are not touched.
"""
from __future__ import annotations

import logging
from datetime import date, timedelta
from pathlib import Path

import pyarrow.parquet as pq

from orchestrator import service

from . import warehouse as wh

log = logging.getLogger(__name__)

START = "2024-01-01"  # first day with orders
AS_OF = "2024-12-31"  # the refresh's "today": the last day with data
DAYS = 366
SIGNUP_LEAD = 92  # customers start signing up this many days before START
INVENTORY_DAYS = 90
DCS = ("AMS", "NYC")  # distribution centres in the inventory snapshots

BASE = {"customers": 100_000, "products": 2_000, "orders": 1_000_000, "sessions": 1_250_000}
MINIMUM = {"customers": 300, "products": 40, "orders": 2_000, "sessions": 2_000}

COMMON = dict(pool="warehouse", retries=2, retry_delay=1.0)  # sources can be flaky; a retry is cheap

LANDING = "landing/orders"  # under the warehouse root: newer days of orders, one Parquet file per day
#: raw.orders' columns and types, which a landed day must have
ORDER_COLUMNS = {"order_id": "BIGINT", "customer_id": "BIGINT", "ordered_at": "VARCHAR", "status": "VARCHAR",
                 "channel": "VARCHAR", "_ingested_at": "TIMESTAMP"}


def sizes(factor: float) -> dict[str, int]:
    """Row counts of the generating keys at a scale factor."""
    return {k: max(MINIMUM[k], round(v * factor)) for k, v in BASE.items()}


def _macros(con, n: dict[str, int], faults: frozenset[str]) -> None:
    """Define the shared generators on a fresh connection. All are pure functions of keys."""
    order_days = DAYS - 10 if "stale_orders" in faults else DAYS
    span = SIGNUP_LEAD + DAYS
    nc, npr = n["customers"], n["products"]
    for macro in (
        # uniform in [0, 1) from a key and a salt; the prime modulus avoids bias toward low bits
        "u(k, salt) AS (hash(k, salt) % 1000003) / 1000003.0",
        "pick(k, salt, xs) AS xs[1 + floor(u(k, salt) * len(xs))::INTEGER]",
        # orders grow over the year: day density rises linearly, hence sqrt
        f"order_day(o) AS floor(sqrt(u(o, 'day')) * {order_days})::INTEGER",
        f"order_ts(o) AS TIMESTAMP '{START}' + to_days(order_day(o)) + to_seconds(floor(u(o, 'sec') * 86400)::BIGINT)",
        f"signed_up(d) AS greatest(2, floor({nc} * (d + {SIGNUP_LEAD}) / {span}))::BIGINT",
        # customers who signed up in the 60 days before day d have ids above recent_lo(d)
        f"recent_lo(d) AS greatest(0, signed_up(d) - floor({nc} * 60 / {span})::BIGINT)",
        # half the orders come from those recent sign-ups, half from anyone signed up by then
        """order_customer(o) AS CASE WHEN u(o, 'new') < 0.5
              THEN recent_lo(order_day(o)) + 1
                   + floor(u(o, 'cust') * (signed_up(order_day(o)) - recent_lo(order_day(o))))::BIGINT
              ELSE 1 + floor(u(o, 'cust') * signed_up(order_day(o)))::BIGINT END""",
        """order_status(o) AS CASE WHEN u(o, 'status') < 0.05 THEN 'cancelled'
              WHEN u(o, 'status') < 0.08 THEN 'refunded'
              WHEN u(o, 'status') < 0.55 THEN 'completed' ELSE 'shipped' END""",
        "n_lines(o) AS 1 + floor(pow(u(o, 'lines'), 2) * 5)::BIGINT",
        # popular products get most of the sales
        f"line_product(l) AS 1 + floor(pow(u(l, 'product'), 2) * {npr})::BIGINT",
        "line_quantity(l) AS 1 + floor(pow(u(l, 'qty'), 3) * 4)::INTEGER",
        "price_cents(p) AS 499 + floor(pow(u(p, 'price'), 2) * 19000)::INTEGER",
        "line_cents(l) AS CASE WHEN u(l, 'discount') < 0.2 THEN round(price_cents(line_product(l)) * 0.9)::INTEGER "
        "ELSE price_cents(line_product(l)) END",
        # messy text: the same value in the spellings real feeds send
        "messy(k, s) AS CASE floor(u(k, 'case') * 5)::INTEGER WHEN 0 THEN upper(s) WHEN 1 THEN ' ' || s || ' ' "
        "WHEN 2 THEN upper(s[1]) || s[2:] ELSE s END",
        "money(k, cents) AS CASE floor(u(k, 'fmt') * 4)::INTEGER WHEN 0 THEN '$' || printf('%.2f', cents / 100) "
        "WHEN 1 THEN replace(printf('%.2f', cents / 100), '.', ',') WHEN 2 THEN printf('%.2f USD', cents / 100) "
        "ELSE printf(' %.2f', cents / 100) END",
    ):
        con.execute(f"CREATE MACRO {macro}")


def _lines_sql(n_orders: str) -> str:
    """One row per order line: (order_id, line_id). Shared by the shop and the payment provider.

    ``n_orders`` is SQL text (a number or a ``{orders}`` placeholder).
    """
    return f"""SELECT order_id, order_id * 8 + k AS line_id FROM (
                 SELECT i AS order_id, unnest(range(n_lines(i))) AS k FROM range(1, {n_orders} + 1) t(i))"""


def _ingest(name: str, query: str, warehouse, scale, fault, landed: list[Path] = ()) -> dict:
    """Resolve the knobs, define the generators, write one raw table (with the ``landed`` days appended)."""
    base, factor, faults = wh.root(warehouse), wh.scale(scale), wh.faults(fault)
    n = sizes(factor)
    with wh.sql(base) as con:
        _macros(con, n, faults)
        rows = wh.write(con, base, name, query.format(**n) + _landed_sql(landed))
    log.info("wrote %s rows to %s (scale %g%s%s)", f"{rows:,}", name, factor,
             f", faults {','.join(sorted(faults))}" if faults else "",
             f", landed days {', '.join(p.stem for p in landed)}" if landed else "")
    return {"table": name, "rows": rows, **({"landed": [p.stem for p in landed]} if landed else {})}


# -- the incremental source: newer days of orders -------------------------------------
def landed(base: Path) -> list[Path]:
    """The days of orders landed under ``base`` (``LANDING``), oldest first.

    Only ``<YYYY-MM-DD>.parquet`` files count: a file still being written under a
    temporary name (``.name.tmp``, ``*.part``) is not a landing yet. A landed file
    whose columns are not raw.orders' is an error naming it, not a silent skip.
    """
    folder = base / LANDING
    if not folder.is_dir():
        return []
    days = []
    for path in sorted(folder.glob("*.parquet")):
        try:
            date.fromisoformat(path.stem)
        except ValueError:
            continue
        if path.name.startswith("."):
            continue
        names = pq.read_schema(path).names
        if names != list(ORDER_COLUMNS):
            raise wh.WarehouseError(
                f"landed file {str(path)!r} has columns {', '.join(names)}; a day of orders needs exactly "
                f"{', '.join(ORDER_COLUMNS)} (raw.orders' columns): fix or remove it")
        days.append(path)
    return days


def _landed_sql(paths: list[Path]) -> str:
    """The UNION ALL that appends the landed days, typed as raw.orders (already ``format``-ted)."""
    if not paths:
        return ""
    files = ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths)
    columns = ", ".join(f"CAST({c} AS {t}) AS {c}" for c, t in ORDER_COLUMNS.items())
    return f"""
        UNION ALL  -- days landed after the extract, oldest first
        SELECT {columns} FROM read_parquet([{files}])"""


def land_orders(day: str | None = None, *, warehouse=None, scale=None) -> Path:
    """Write one newer day of orders to ``<warehouse>/landing/orders/<day>.parquet``, as the shop's feed would.

    ``day`` (ISO) must be after ``AS_OF``; by default the day after the newest one
    landed (the day after ``AS_OF`` when none has). Its orders continue the
    extract's ids, about as many as a day at the end of the year (the rate the
    year ends on: twice the average), with the same messy text; their lines and
    payments are not part of this feed. Written atomically, so a watcher
    (``critpath watch``) never sees half a day. Returns the file.
    """
    base, factor = wh.root(warehouse), wh.scale(scale)
    end = date.fromisoformat(AS_OF)
    if day is None:
        newest = [date.fromisoformat(p.stem) for p in landed(base)]
        when = max([end, *newest]) + timedelta(days=1)
    else:
        try:
            when = date.fromisoformat(day)
        except ValueError:
            raise wh.WarehouseError(f"day {day!r} is not an ISO date such as 2025-01-01") from None
        if when <= end:
            raise wh.WarehouseError(f"day {day} is not after the extract's last day {AS_OF}: a landed day is newer")
    n = sizes(factor)
    per_day = max(1, round(2 * n["orders"] / DAYS))
    first = n["orders"] + (when - end).days * per_day - per_day + 1  # ids continue the extract's, day after day
    query = f"""
        SELECT order_id, 1 + floor(u(order_id, 'cust') * {n['customers']})::BIGINT AS customer_id,
               strftime(TIMESTAMP '{when}' + to_seconds(floor(u(order_id, 'sec') * 86400)::BIGINT),
                        '%Y-%m-%dT%H:%M:%S') AS ordered_at,
               messy(order_id, order_status(order_id)) AS status,
               pick(order_id, 'channel', ['web','web','web','app','app','marketplace']) AS channel,
               TIMESTAMP '{when + timedelta(days=1)} 00:30:00' AS _ingested_at
        FROM range({first}, {first + per_day}) t(order_id)"""
    final = base / LANDING / f"{when}.parquet"
    with wh.sql(base) as con:
        _macros(con, n, frozenset())
        relation = con.sql(query)
        to_reader = getattr(relation, "to_arrow_reader", None) or relation.fetch_arrow_reader
        table = to_reader(wh.BATCH_ROWS).read_all()
    with wh.atomic_path(final) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    log.info("landed %s orders of %s in %s", f"{per_day:,}", when, final)
    return final


@service(tags=["ingest", "customers"], estimate=0.2, timeout=120, **COMMON)
def ingest_customers(*, warehouse=None, scale=None, fault=None) -> dict:
    """raw.customers: sign-ups in id order; 3% re-sent later with a changed email."""
    query = f"""
        WITH c AS (
          SELECT i AS customer_id,
                 DATE '{START}' - {SIGNUP_LEAD} + floor((i - 1) * {SIGNUP_LEAD + DAYS} / {{customers}})::INTEGER AS signup_date,
                 pick(i, 'first', ['Ada','Alan','Grace','Linus','Barbara','Edsger','Frances','Donald','Radia','Ken',
                                   'Margaret','Dennis','Karen','Tim','Sophie','John']) AS first_name,
                 pick(i, 'last', ['Lovelace','Turing','Hopper','Torvalds','Liskov','Dijkstra','Allen','Knuth',
                                  'Perlman','Thompson','Hamilton','Ritchie','Jones','Lee','Wilson','Backus']) AS last_name,
                 pick(i, 'domain', ['example.com','mail.test','shop.example','inbox.test']) AS domain,
                 pick(i, 'country', ['US','US','US','GB','DE','NL','FR','ES']) AS country
          FROM range(1, {{customers}} + 1) t(i))
        SELECT customer_id, first_name || ' ' || last_name AS full_name,
               messy(customer_id, lower(first_name || '.' || last_name || customer_id || '@' || domain)) AS email,
               CASE WHEN u(customer_id, 'nocountry') < 0.02 THEN NULL
                    ELSE messy(customer_id + 7, lower(country)) END AS country,
               strftime(signup_date, '%Y-%m-%d') AS signup_date,
               TIMESTAMP '{AS_OF} 23:00:00' AS _ingested_at
        FROM c
        UNION ALL  -- re-sent rows: the customer changed their email; staging keeps the newest
        SELECT customer_id, first_name || ' ' || last_name,
               lower(first_name || customer_id || '@new.example'), country, strftime(signup_date, '%Y-%m-%d'),
               TIMESTAMP '{AS_OF} 23:30:00'
        FROM c WHERE u(customer_id, 'dup') < 0.03"""
    return _ingest("raw.customers", query, warehouse, scale, fault)


@service(tags=["ingest", "catalog"], estimate=0.05, timeout=120, **COMMON)
def ingest_products(*, warehouse=None, scale=None, fault=None) -> dict:
    """raw.products: the catalogue; SKUs, categories and prices as messy text; 2% re-sent."""
    query = f"""
        WITH p AS (
          SELECT i AS product_id, 'SKU-' || lpad(i::VARCHAR, 6, '0') AS sku,
                 pick(i, 'adj', ['Classic','Organic','Compact','Deluxe','Recycled','Smart','Vintage','Travel']) || ' ' ||
                 pick(i, 'noun', ['Mug','Lamp','Backpack','Notebook','Kettle','Blanket','Speaker','Planter','Jacket',
                                  'Headphones']) AS name,
                 pick(i, 'cat', ['home','home','outdoor','office','kitchen','electronics','apparel']) AS category,
                 price_cents(i) AS cents
          FROM range(1, {{products}} + 1) t(i))
        SELECT product_id, messy(product_id, lower(sku)) AS sku, name, messy(product_id + 3, category) AS category,
               money(product_id, cents) AS list_price, TIMESTAMP '{AS_OF} 23:00:00' AS _ingested_at
        FROM p
        UNION ALL
        SELECT product_id, sku, name, category, money(product_id + 1, cents), TIMESTAMP '{AS_OF} 23:30:00'
        FROM p WHERE u(product_id, 'dup') < 0.02"""
    return _ingest("raw.products", query, warehouse, scale, fault)


@service(tags=["ingest", "sales"], estimate=1.0, timeout=300, **COMMON)
def ingest_orders(*, warehouse=None, scale=None, fault=None) -> dict:
    """raw.orders: order headers; two timestamp formats, messy status; 2% re-sent; then every landed day.

    Faults: ``null_customer_keys`` blanks 1% of customer ids, ``stale_orders``
    stops orders ten days before the as-of date.
    """
    null_keys = "u(order_id, 'nullkey') < 0.01" if "null_customer_keys" in wh.faults(fault) else "false"
    query = f"""
        WITH o AS (
          SELECT i AS order_id, order_ts(i) AS ts, order_status(i) AS status FROM range(1, {{orders}} + 1) t(i))
        SELECT order_id,
               CASE WHEN {null_keys} THEN NULL ELSE order_customer(order_id) END AS customer_id,
               CASE WHEN u(order_id, 'tsfmt') < 0.15 THEN strftime(ts, '%Y/%m/%d %H:%M:%S')
                    ELSE strftime(ts, '%Y-%m-%dT%H:%M:%S') END AS ordered_at,
               messy(order_id, status) AS status,
               pick(order_id, 'channel', ['web','web','web','app','app','marketplace']) AS channel,
               TIMESTAMP '{AS_OF} 23:00:00' AS _ingested_at
        FROM o
        UNION ALL  -- re-sent rows from a replayed change feed
        SELECT order_id, CASE WHEN {null_keys} THEN NULL ELSE order_customer(order_id) END,
               strftime(ts, '%Y-%m-%dT%H:%M:%S'), status,
               pick(order_id, 'channel', ['web','web','web','app','app','marketplace']),
               TIMESTAMP '{AS_OF} 23:45:00'
        FROM o WHERE u(order_id, 'dup') < 0.02"""
    return _ingest("raw.orders", query, warehouse, scale, fault, landed(wh.root(warehouse)))


@service(tags=["ingest", "sales"], estimate=1.7, timeout=300, **COMMON)
def ingest_order_lines(*, warehouse=None, scale=None, fault=None) -> dict:
    """raw.order_lines: 1-5 lines per order, unit prices as text; 1% re-sent.

    Fault ``orphan_order_lines`` adds lines for orders that do not exist.
    """
    orphans = ""
    if "orphan_order_lines" in wh.faults(fault):
        # ids past the last order: no such order exists
        orphans = f"""UNION ALL
        SELECT (o + {{orders}}) * 8 AS line_id, o + {{orders}}, line_product(o), '1', '9.99', TIMESTAMP '{AS_OF} 23:00:00'
        FROM range(1, {{orders}} + 1) t(o) WHERE u(o, 'orphan') < 0.01"""
    query = f"""
        WITH l AS ({_lines_sql('{orders}')})
        SELECT line_id, order_id, line_product(line_id) AS product_id,
               messy(line_id, line_quantity(line_id)::VARCHAR) AS quantity,
               CASE WHEN u(line_id, 'comma') < 0.1 THEN replace(printf('%.2f', line_cents(line_id) / 100), '.', ',')
                    ELSE printf('%.2f', line_cents(line_id) / 100) END AS unit_price,
               TIMESTAMP '{AS_OF} 23:00:00' AS _ingested_at
        FROM l
        UNION ALL
        SELECT line_id, order_id, line_product(line_id), line_quantity(line_id)::VARCHAR,
               printf('%.2f', line_cents(line_id) / 100), TIMESTAMP '{AS_OF} 23:45:00'
        FROM l WHERE u(line_id, 'dup') < 0.01
        {orphans}"""
    return _ingest("raw.order_lines", query, warehouse, scale, fault)


@service(tags=["ingest", "finance"], estimate=1.6, timeout=300, **COMMON)
def ingest_payments(*, warehouse=None, scale=None, fault=None) -> dict:
    """raw.payments: captures per non-cancelled order (5% split in two), refunds; 2% webhook retries."""
    query = f"""
        WITH totals AS (
          SELECT order_id, sum(line_quantity(line_id) * line_cents(line_id)) AS cents
          FROM ({_lines_sql('{orders}')}) GROUP BY order_id),
        p AS (
          SELECT order_id * 4 + j AS payment_id, order_id,
                 CASE WHEN j = 2 THEN -cents                                  -- refund
                      WHEN NOT split THEN cents
                      WHEN j = 0 THEN cents // 2 ELSE cents - cents // 2 END AS cents,
                 CASE WHEN j = 1 THEN 'gift_card' ELSE pick(order_id, 'method', ['card','card','card','paypal']) END AS method,
                 order_ts(order_id) + to_minutes(2 + 30 * j) AS paid_at
          FROM (SELECT order_id, cents, u(order_id, 'split') < 0.05 AS split,
                       order_status(order_id) AS status FROM totals) t,
               range(3) r(j)
          WHERE status <> 'cancelled' AND (j = 0 OR (j = 1 AND split) OR (j = 2 AND status = 'refunded')))
        SELECT payment_id, order_id, money(payment_id, cents) AS amount, method,
               epoch_ms(paid_at) AS paid_at_ms, TIMESTAMP '{AS_OF} 23:00:00' AS _ingested_at
        FROM p
        UNION ALL  -- the provider retries webhooks
        SELECT payment_id, order_id, money(payment_id + 1, cents), method, epoch_ms(paid_at),
               TIMESTAMP '{AS_OF} 23:50:00'
        FROM p WHERE u(payment_id, 'dup') < 0.02
        ORDER BY payment_id, _ingested_at"""
    return _ingest("raw.payments", query, warehouse, scale, fault)


@service(tags=["ingest", "web"], estimate=3.5, timeout=600, **COMMON)
def ingest_web_events(*, warehouse=None, scale=None, fault=None) -> dict:
    """raw.web_events: tracker events, no session id (staging sessionizes); 3% retried, 2% lost.

    Each visit is page views, then product views, then cart, checkout and
    purchase for the visits that get that far, a minute or so apart.
    """
    query = f"""
        WITH v AS (
          SELECT s AS visit, 'v' || (1 + floor(u(s, 'visitor') * ({{sessions}} / 3)))::BIGINT AS visitor_id,
                 pick(s, 'device', ['desktop','mobile','mobile','tablet']) AS device,
                 TIMESTAMP '{START}' + to_days(floor(sqrt(u(s, 'day')) * {DAYS})::INTEGER)
                   + to_seconds(floor(u(s, 'sec') * 86400)::BIGINT) AS started,
                 1 + floor(u(s, 'pv') * 4)::INTEGER AS page_views,
                 CASE WHEN u(s, 'depth') < 0.65 THEN 1 + floor(u(s, 'prv') * 3)::INTEGER ELSE 0 END AS product_views,
                 CASE WHEN u(s, 'depth') < 0.07 THEN 3 WHEN u(s, 'depth') < 0.12 THEN 2
                      WHEN u(s, 'depth') < 0.25 THEN 1 ELSE 0 END AS deeper
          FROM range(1, {{sessions}} + 1) t(s)),
        e AS (
          SELECT visit * 16 + k AS event_id, visitor_id, device, started + to_seconds(k * 60 + floor(u(visit * 16 + k, 'gap') * 50)::BIGINT) AS event_at,
                 CASE WHEN k < page_views THEN 'page_view' WHEN k < page_views + product_views THEN 'product_view'
                      ELSE ['add_to_cart', 'checkout', 'purchase'][k - page_views - product_views + 1] END AS event_type
          FROM (SELECT *, unnest(range(page_views + product_views + deeper)) AS k FROM v)
          WHERE u(visit * 16 + k, 'lost') >= 0.02)
        SELECT event_id, visitor_id,
               CASE floor(u(event_id, 'spell') * 3)::INTEGER WHEN 0 THEN upper(event_type)
                    WHEN 1 THEN replace(event_type, '_', '-') ELSE event_type END AS event_type,
               device, epoch_ms(event_at) AS ts_ms, TIMESTAMP '{AS_OF} 23:00:00' AS _received_at
        FROM e
        UNION ALL
        SELECT event_id, visitor_id, event_type, device, epoch_ms(event_at), TIMESTAMP '{AS_OF} 23:10:00'
        FROM e WHERE u(event_id, 'retry') < 0.03"""
    return _ingest("raw.web_events", query, warehouse, scale, fault)


@service(tags=["ingest", "inventory"], estimate=0.3, timeout=300, **COMMON)
def ingest_inventory(*, warehouse=None, scale=None, fault=None) -> dict:
    """raw.inventory_snapshots: on-hand units per SKU, DC and day for the last 90 days; 2% corrected.

    Stock levels are drawn around each product's expected demand (popular
    products hold more), so some fall below their reorder point and most do not.
    """
    # expected units per product per day at the end of the year: orders per day
    # end at twice the average (linear growth), 2.25 lines per order, 1.67 units per line
    daily = "(2.0 * {orders} / %d * 2.25 * 1.67) * (sqrt(p / {products}) - sqrt((p - 1) / {products}))" % DAYS
    query = f"""
        WITH s AS (
          SELECT p, dc, floor(pow(u(p, dc || 'stock'), 1.3) * 25 * {daily}) AS level, {daily} AS daily
          FROM range(1, {{products}} + 1) a(p), (SELECT unnest({list(DCS)}) AS dc)),
        snap AS (  -- older snapshots held more: stock runs down toward today
          SELECT p, dc, d, DATE '{AS_OF}' - d::INTEGER AS snapshot_date,
                 greatest(0, level + floor(d * daily * 0.3) + floor((u(p * 1000 + d, dc) - 0.5) * 0.2 * level))::INTEGER
                   AS on_hand
          FROM s, range({INVENTORY_DAYS}) c(d))
        SELECT messy(p, 'sku-' || lpad(p::VARCHAR, 6, '0')) AS sku, dc AS warehouse_code,
               strftime(snapshot_date, '%Y-%m-%d') AS snapshot_date, on_hand,
               TIMESTAMP '{AS_OF} 23:00:00' AS _ingested_at
        FROM snap
        UNION ALL  -- corrections after a recount; staging keeps the later one
        SELECT 'SKU-' || lpad(p::VARCHAR, 6, '0'), dc, strftime(snapshot_date, '%Y-%m-%d'), on_hand + 1,
               TIMESTAMP '{AS_OF} 23:30:00'
        FROM snap WHERE u(p * 1000 + d, dc || 'fix') < 0.02
        ORDER BY 1, 2, 3, 5"""
    return _ingest("raw.inventory_snapshots", query, warehouse, scale, fault)
