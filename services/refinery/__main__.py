"""Run the whole refinery in this process, one service after another, and print each one's seconds.

    python -m services.refinery [--scale 1.0] [--warehouse DIR] [--fault NAME]
    python -m services.refinery --land-orders [--scale 1.0] [--warehouse DIR]   # a newer day of orders lands

A measuring tool and a smoke test, not a scheduler: the orchestrator is what
runs services in parallel. The numbers it prints are what the ``estimate=`` of
each service was tuned from.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time

from . import SERVICES, QualityCheckFailed, WarehouseError
from .ingest import land_orders


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.refinery", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=None, help="size factor (default: $CRITPATH_SCALE or 1.0)")
    parser.add_argument("--warehouse", default=None, help="root folder (default: $CRITPATH_WAREHOUSE)")
    parser.add_argument("--fault", default=None, help="inject faults, e.g. orphan_order_lines")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the services' log lines")
    parser.add_argument("--land-orders", action="store_true",
                        help="only drop the next newer day of orders into landing/orders (then: critpath emit "
                             "ingest_orders)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    if args.land_orders:
        try:
            print(land_orders(warehouse=args.warehouse, scale=args.scale))
        except WarehouseError as e:
            parser.error(str(e))
        return 0
    kwargs = {"scale": args.scale, "warehouse": args.warehouse, "fault": args.fault}
    total = 0.0
    for fn in SERVICES:
        start = time.perf_counter()
        try:
            fn(**kwargs)
        except QualityCheckFailed as e:
            print(f"{fn.__name__:32s} FAILED\n{e}", file=sys.stderr)
            return 1
        took = time.perf_counter() - start
        total += took
        print(f"{fn.__name__:32s} {took:7.2f} s  (estimate {fn.__critpath__.est:.1f})")
    print(f"{'total':32s} {total:7.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
