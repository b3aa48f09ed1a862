"""A six-service example for the README: two extracts, a transform, a check, a report, a publish.

::

    extract_orders ────┐
                       ├─> transform_sales ─┬─> check_sales ──┐
    extract_customers ─┘                    └─> build_report ─┴─> publish_report

The work is synthetic (``time.sleep``) so the example runs anywhere in about a
second sequentially; ``speed=`` multiplies every sleep (``speed=0`` for tests).
The extracts and the transform share the ``db`` pool of two slots, so at most
two of them touch the "database" at once.

    critpath run --module services.demo
"""
from __future__ import annotations

import logging
import time

from orchestrator import service

log = logging.getLogger(__name__)

POOLS = {"db": 2}


def _work(name: str, seconds: float, speed: float) -> dict:
    time.sleep(max(0.0, seconds * speed))
    log.info("%s done after %.2f s of work", name, seconds * speed)
    return {"service": name, "seconds": seconds * speed}


@service(pool="db", tags=["extract"], estimate=0.3, retries=2, retry_delay=0.5, timeout=30)
def extract_orders(*, speed: float = 1.0) -> dict:
    """Pretend to copy today's orders out of the shop database."""
    return _work("extract_orders", 0.3, speed)


@service(pool="db", tags=["extract"], estimate=0.2, retries=2, retry_delay=0.5, timeout=30)
def extract_customers(*, speed: float = 1.0) -> dict:
    """Pretend to copy the customer table."""
    return _work("extract_customers", 0.2, speed)


@service(after=["extract_orders", "extract_customers"], pool="db", tags=["transform"], estimate=0.4, timeout=60)
def transform_sales(*, speed: float = 1.0) -> dict:
    """Pretend to join orders to customers."""
    return _work("transform_sales", 0.4, speed)


@service(after=["transform_sales"], tags=["check"], estimate=0.1, timeout=30)
def check_sales(*, speed: float = 1.0) -> dict:
    """Pretend to check the joined table; a real check would raise on bad data."""
    return _work("check_sales", 0.1, speed)


@service(after=["transform_sales"], tags=["report"], estimate=0.2, timeout=30)
def build_report(*, speed: float = 1.0) -> dict:
    """Pretend to render the sales report."""
    return _work("build_report", 0.2, speed)


@service(after=["check_sales", "build_report"], tags=["report", "publish"], estimate=0.1, retries=1, timeout=30)
def publish_report(*, speed: float = 1.0) -> dict:
    """Pretend to publish the report, only once the check has passed."""
    return _work("publish_report", 0.1, speed)
