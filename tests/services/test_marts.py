"""Marts: every number recomputed here, independently, in plain Python from the staged rows."""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest

from services.refinery import marts
from services.refinery.ingest import AS_OF, START

from .util import rows


@pytest.fixture(scope="module")
def sold(built):
    """Staged order lines of orders that earn revenue, each joined to its order."""
    orders = {r["order_id"]: r for r in rows(built, "staging.orders")}
    out = []
    for line in rows(built, "staging.order_lines"):
        order = orders.get(line["order_id"])
        if order and order["status"] in marts.REVENUE_STATUSES:
            out.append({**line, "order_date": order["order_date"], "customer_id": order["customer_id"]})
    return out


def test_daily_revenue_equals_the_sum_over_staged_lines_day_by_day(built, sold):
    expected_revenue, expected_orders, expected_units = Counter(), defaultdict(set), Counter()
    for r in sold:
        expected_revenue[r["order_date"]] += r["line_total"]
        expected_orders[r["order_date"]].add(r["order_id"])
        expected_units[r["order_date"]] += r["quantity"]
    mart = rows(built, "marts.daily_revenue")
    first, last = date.fromisoformat(START), date.fromisoformat(AS_OF)
    assert [r["day"] for r in mart] == [first + timedelta(d) for d in range((last - first).days + 1)]
    for r in mart:
        assert r["revenue"] == expected_revenue.get(r["day"], 0), r["day"]
        assert r["orders"] == len(expected_orders.get(r["day"], ()))
        assert r["units"] == expected_units.get(r["day"], 0)
    assert sum(r["revenue"] for r in mart) == sum(r["line_total"] for r in sold) > 0


def test_customer_ltv_revenue_reconciles_with_payments_and_with_daily_revenue(built, sold):
    mart = rows(built, "marts.customer_ltv")
    assert [r["customer_id"] for r in mart] == [r["customer_id"] for r in rows(built, "staging.customers")]
    expected = Counter()
    for r in sold:
        expected[r["customer_id"]] += r["line_total"]
    for r in mart:
        assert r["revenue"] == expected.get(r["customer_id"], 0)
        assert r["net_paid"] == r["revenue"], r  # the payment provider agrees with the shop
        if r["orders"] == 0:
            assert r["first_order_at"] is None and r["avg_order_value"] is None
        else:
            assert r["cohort_month"] == r["first_order_at"].date().replace(day=1)
    assert sum(r["revenue"] for r in mart) == sum(r["revenue"] for r in rows(built, "marts.daily_revenue"))


def test_cohort_retention_matches_an_independent_count(built, sold):
    months = defaultdict(set)
    for r in sold:
        months[r["customer_id"]].add(r["order_date"].replace(day=1))
    cohort = {c: min(ms) for c, ms in months.items()}
    expected = Counter()
    for c, ms in months.items():
        for m in ms:
            expected[(cohort[c], (m.year - cohort[c].year) * 12 + m.month - cohort[c].month)] += 1
    sizes = Counter(cohort.values())
    mart = rows(built, "marts.cohort_retention")
    assert {(r["cohort_month"], r["months_since"]): r["active_customers"] for r in mart} == dict(expected)
    for r in mart:
        assert r["cohort_size"] == sizes[r["cohort_month"]]
        assert r["retention"] == pytest.approx(r["active_customers"] / r["cohort_size"], abs=1e-4)
        if r["months_since"] == 0:
            assert r["retention"] == 1.0
    assert sum(sizes.values()) == len(months)


def test_product_performance_totals_and_recent_window(built, sold):
    recent_from = date.fromisoformat(AS_OF) - timedelta(marts.DEMAND_WINDOW_DAYS - 1)
    units, recent, revenue = Counter(), Counter(), Counter()
    for r in sold:
        units[r["product_id"]] += r["quantity"]
        revenue[r["product_id"]] += r["line_total"]
        if r["order_date"] >= recent_from:
            recent[r["product_id"]] += r["quantity"]
    mart = rows(built, "marts.product_performance")
    assert len(mart) == len(rows(built, "staging.products"))
    for r in mart:
        assert (r["units"], r["revenue"], r["units_28d"]) == \
            (units[r["product_id"]], revenue[r["product_id"]], recent[r["product_id"]])
    by_category = defaultdict(list)
    for r in mart:
        by_category[r["category"]].append(r)
    for members in by_category.values():
        best = min(members, key=lambda r: r["category_rank"])
        assert best["category_rank"] == 1 and best["revenue"] == max(r["revenue"] for r in members)


def test_reorder_alerts_list_exactly_the_products_below_their_reorder_point(built):
    latest = max(r["snapshot_date"] for r in rows(built, "staging.inventory"))
    stock = Counter()
    for r in rows(built, "staging.inventory"):
        if r["snapshot_date"] == latest:
            stock[r["sku"]] += r["on_hand"]
    below = {}
    for p in rows(built, "marts.product_performance"):
        point = math.ceil(Fraction(p["units_28d"]) * marts.LEAD_TIME_DAYS
                          * Fraction(marts.SAFETY_FACTOR) / marts.DEMAND_WINDOW_DAYS)
        if stock[p["sku"]] < point:
            below[p["product_id"]] = (stock[p["sku"]], point)
    alerts = rows(built, "marts.reorder_alerts")
    assert {r["product_id"]: (r["on_hand"], r["reorder_point"]) for r in alerts} == below
    assert 0 < len(below) < len(stock), "the scale should give some alerts and some healthy products"
    covers = [r["days_of_cover"] for r in alerts]
    assert covers == sorted(covers)


def test_funnel_stages_never_grow_and_match_the_sessions(built):
    mart = rows(built, "marts.funnel_conversion")
    for r in mart:
        counts = [r[stage] for stage in marts.FUNNEL]
        assert counts == sorted(counts, reverse=True), r
    expected = Counter()
    for s in rows(built, "staging.sessions"):
        reached = [True, s["product_views"] > 0, s["added_to_cart"], s["checked_out"], s["purchased"]]
        for stage, ok in zip(marts.FUNNEL, reached, strict=True):
            if not ok:
                break
            expected[stage] += 1
    assert {stage: sum(r[stage] for r in mart) for stage in marts.FUNNEL} == {s: expected[s] for s in marts.FUNNEL}
    assert expected["purchased"] > 0


def test_money_stays_decimal_in_every_mart(built):
    assert isinstance(rows(built, "marts.daily_revenue")[0]["revenue"], Decimal)
    assert isinstance(rows(built, "marts.customer_ltv")[0]["net_paid"], Decimal)
    assert isinstance(rows(built, "marts.product_performance")[0]["revenue_28d"], Decimal)
