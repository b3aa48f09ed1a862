"""Three services and a pool limit, the shape of a real services module.

    load_orders --\
                   build_revenue      [warehouse pool, limit 2]
    load_fx ------/
"""
from orchestrator.planning.model import service

POOLS = {"warehouse": 2}


@service(estimate=2.0, tags=["load"], pool="warehouse")
def load_orders():
    return "orders"


@service(estimate=0.5, tags=["load"])
def load_fx():
    return "fx"


@service(after=["load_orders", "load_fx"], pool="warehouse", retries=2, timeout=60.0,
         params={"currency": "EUR"})
def build_revenue(currency: str = "USD"):
    return f"revenue in {currency}"


def helper():
    """Not a service: no @service."""
