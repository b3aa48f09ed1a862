"""The bundled refresh's incremental orders, served: ``critpath serve`` (no schedule) of
``services.refinery`` at a tiny scale, a newer day of orders lands, ``critpath emit
ingest_orders``: one flow run refreshes exactly ``ingest_orders+`` and rewrites the orders'
tables, and not one file of the web side (raw events, sessions, funnel) is rewritten.

Against the session's real Prefect server; the helpers are those of
tests/test_events_trigger.py. No wall-clock time is asserted; every wait is bounded.
"""
from __future__ import annotations

import hashlib

import pytest

from orchestrator.inputs.loaders import load_module
from orchestrator.planning.selection import select
from services.refinery import ingest
from tests.helpers.processes import Cli, critpath, wait_until
from tests.services.util import build
from tests.test_events_trigger import WAIT_S, _final, _left_in, _ran, _runs, _stop

pytestmark = pytest.mark.server

SCALE = "0.001"  # every source at its minimum size: a refresh of a second or two
WEB = ("raw/web_events.parquet", "staging/sessions.parquet", "marts/funnel_conversion.parquet")
ORDERS = ("raw/orders.parquet", "staging/orders.parquet", "marts/daily_revenue.parquet",
          "marts/customer_ltv.parquet", "marts/cohort_retention.parquet", "publish/marts.duckdb")


def _stamps(root) -> dict[str, tuple[int, int, str]]:
    """(inode, mtime ns, sha256) of every table and published file."""
    return {p.relative_to(root).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns,
                                             hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file() and "landing" not in p.parts}


def test_an_event_on_ingest_orders_refreshes_the_orders_side_and_rewrites_nothing_of_the_web(
        prefect_server, tmp_path):
    url, warehouse = prefect_server, tmp_path / "warehouse"
    build(warehouse, scale=float(SCALE))  # last night's full refresh, as plain calls
    env = {"CRITPATH_WAREHOUSE": str(warehouse), "CRITPATH_SCALE": SCALE, "CRITPATH_FAULT": "",
           "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    with Cli("serve", "--module", "services.refinery", "--name", "refinery-orders", "--debounce", "0.5",
             cwd=tmp_path, api_url=url, **env) as cli:
        try:
            cli.wait_for_output("serving deployment", 120)
            before = _stamps(warehouse)
            ingest.land_orders(warehouse=warehouse, scale=float(SCALE))
            sent = critpath("emit", "ingest_orders", "--module", "services.refinery", cwd=tmp_path, api_url=url)
            assert sent.returncode == 0, sent.stderr
            runs = wait_until(lambda: (lambda rs: rs if _final(rs) else None)(_runs(url, "refinery-orders")),
                              WAIT_S, "the refresh of ingest_orders+ to end")
        finally:
            code = _stop(cli)
    assert code in (0, 130) and "Traceback" not in cli.stdout + cli.stderr, cli.stdout + cli.stderr
    assert [(r.name, r.state.name) for r in runs] == [("ingest_orders+ updated", "Completed")]
    expected = set(select(load_module("services.refinery"), "ingest_orders+").names)
    assert set(_ran(url, runs[0], expected)) == expected
    after = _stamps(warehouse)
    for f in WEB:
        assert after[f] == before[f], f"{f} was rewritten"
    for f in ORDERS:
        assert after[f][:2] != before[f][:2], f"{f} was not rewritten"
    assert after["raw/orders.parquet"][2] != before["raw/orders.parquet"][2]  # the new day is in
    wait_until(lambda: not _left_in(tmp_path), 60, "every process serve started to end")
