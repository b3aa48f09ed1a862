"""Quality checks: silent on clean data; each injected fault fails exactly the check meant to catch it."""
from __future__ import annotations

import pickle

import pytest

from services import refinery
from services.refinery import checks, ingest, staging
from services.refinery.checks import Failure, QualityCheckFailed

from .util import SCALE, rows

CHECKS = [checks.check_row_counts, checks.check_not_null_keys, checks.check_referential_integrity,
          checks.check_freshness]


def _failing(root) -> dict[str, QualityCheckFailed]:
    """Run every check; the ones that raised, by name."""
    failed = {}
    for check in CHECKS:
        try:
            check(warehouse=root)
        except QualityCheckFailed as e:
            failed[check.__name__] = e
    return failed


def test_every_check_passes_on_clean_data(built):
    for check in CHECKS:
        result = check(warehouse=built)
        assert result["check"] == check.__name__ and result["failures"] == 0 and result["tables"] > 0


def _rebuild(root, fault, *services):
    for fn in services:
        fn(warehouse=root, scale=SCALE, fault=fault)


def test_orphan_order_lines_fail_referential_integrity_only(clean_copy):
    _rebuild(clean_copy, "orphan_order_lines", ingest.ingest_order_lines, staging.stage_order_lines)
    orders = {r["order_id"] for r in rows(clean_copy, "staging.orders")}
    orphans = sum(r["order_id"] not in orders for r in rows(clean_copy, "staging.order_lines"))
    failed = _failing(clean_copy)
    assert sorted(failed) == ["check_referential_integrity"]
    error = failed["check_referential_integrity"]
    assert (error.table, error.check, error.count) == (
        "staging.order_lines", "references(order_id -> staging.orders.order_id)", orphans)
    assert orphans > 0
    assert f"{orphans:,} rows reference a missing staging.orders row" in str(error)


def test_null_customer_keys_fail_the_not_null_check_only(clean_copy):
    _rebuild(clean_copy, "null_customer_keys", ingest.ingest_orders, staging.stage_orders)
    nulls = sum(r["customer_id"] is None for r in rows(clean_copy, "staging.orders"))
    failed = _failing(clean_copy)
    assert sorted(failed) == ["check_not_null_keys"]
    error = failed["check_not_null_keys"]
    assert (error.table, error.check, error.count) == ("staging.orders", "not_null(customer_id)", nulls)
    assert nulls > 0
    assert str(error).startswith(f"1 quality check failed:\n  - staging.orders not_null(customer_id): "
                                 f"{nulls:,} rows have NULL customer_id\n")
    assert str(error).endswith("then rerun from there (e.g. --select stage_orders+)")


def test_stale_orders_fail_freshness_only(clean_copy):
    _rebuild(clean_copy, "stale_orders", ingest.ingest_orders, staging.stage_orders)
    failed = _failing(clean_copy)
    assert sorted(failed) == ["check_freshness"]
    error = failed["check_freshness"]
    assert (error.table, error.check) == ("staging.orders", "freshness(ordered_at)")
    assert error.count > 24 * 10 - 24  # ten days missing, measured in hours
    assert "allowed: 24" in str(error)


def test_dropped_order_lines_fail_row_counts_only(clean_copy):
    before = len(rows(clean_copy, "staging.order_lines"))
    _rebuild(clean_copy, "dropped_order_lines", staging.stage_order_lines)
    lost = before - len(rows(clean_copy, "staging.order_lines"))
    failed = _failing(clean_copy)
    assert sorted(failed) == ["check_row_counts"]
    error = failed["check_row_counts"]
    assert (error.table, error.check, error.count) == ("staging.order_lines", "row_count", lost)
    assert lost > 0


def test_two_faults_fail_two_checks(clean_copy):
    fault = "orphan_order_lines,null_customer_keys"
    _rebuild(clean_copy, fault, ingest.ingest_orders, ingest.ingest_order_lines,
             staging.stage_orders, staging.stage_order_lines)
    assert sorted(_failing(clean_copy)) == ["check_not_null_keys", "check_referential_integrity"]


def test_the_environment_variable_injects_the_fault_too(clean_copy, monkeypatch):
    monkeypatch.setenv("CRITPATH_FAULT", "orphan_order_lines")
    ingest.ingest_order_lines(warehouse=clean_copy, scale=SCALE)
    staging.stage_order_lines(warehouse=clean_copy)
    with pytest.raises(QualityCheckFailed, match="staging.order_lines references"):
        checks.check_referential_integrity(warehouse=clean_copy)


def test_every_failure_is_reported_at_once_and_survives_pickling():
    error = QualityCheckFailed([Failure("staging.orders", "not_null(customer_id)", 7, "7 rows have NULL customer_id"),
                                Failure("staging.payments", "not_null(order_id)", 2, "2 rows have NULL order_id")])
    assert str(error).startswith("2 quality checks failed:\n  - staging.orders not_null(customer_id): 7 rows")
    # a worker process sends the exception back by pickling it
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is QualityCheckFailed
    assert again.failures == error.failures and str(again) == str(error)
    assert (again.table, again.check, again.count) == ("staging.orders", "not_null(customer_id)", 7)


def test_checks_never_retry_and_wait_for_exactly_the_staging_they_read():
    staged = {fn.__name__ for fn in refinery.SERVICES if fn.__name__.startswith("stage_")}
    for check in CHECKS:
        assert check.__critpath__.retries == 0 and "check" in check.__critpath__.tags
    assert set(checks.check_row_counts.__critpath__.after) == staged
    assert set(checks.check_not_null_keys.__critpath__.after) == staged
    assert set(checks.check_referential_integrity.__critpath__.after) == staged - {"stage_sessions"}
    assert set(checks.check_freshness.__critpath__.after) == {"stage_orders", "stage_sessions", "stage_inventory"}
