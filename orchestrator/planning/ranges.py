"""The largest number each kind of input may be: graph files, critpath.toml and flags alike.

Every number a user gives is checked against one of these bounds before it is used.
A bigger value is almost always a mistake (milliseconds given as seconds, a stray row
of zeros), and past them the arithmetic itself breaks: ``work / 10**400`` cannot be a
float, a timer cannot wait 1e308 s. One table, so that the same key means the same
range wherever it is written. ``check_number`` compares without converting to float
first, so it never overflows, whatever the value.
"""
from __future__ import annotations

import math
import sys
from typing import Any

#: Longer than any real data service; a bigger number is almost always a unit mistake (ms for s)
#: and would make the plan meaningless.
MAX_SECONDS = 1e7
MAX_RETRIES = 100
#: Services in flight at once (workers, max_concurrency, a pool's limit): wider than this is no
#: limit at all, and it keeps ``work / limit`` a float division.
MAX_SLOTS = 1_000_000
MAX_POOL_LIMIT = MAX_SLOTS
#: time_scale only has to leave the scaled durations within MAX_SECONDS, checked per service.
MAX_TIME_SCALE = sys.float_info.max


def is_number(v: Any) -> bool:
    """A JSON/TOML number: ``bool`` is an ``int`` in Python, but ``true`` is not a number."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_number(v: Any, low: float, high: float, whole: bool = False, low_open: bool = False) -> bool:
    """``v`` is a (whole) number in [low, high] (or (low, high]); never raises."""
    if not is_number(v) or (whole and not isinstance(v, int)):
        return False
    if isinstance(v, float) and not math.isfinite(v):  # nan compares False to everything
        return False
    return (low < v if low_open else low <= v) and v <= high

#: Services in flight when neither a flag, the config nor the runner says how many.
DEFAULT_CONCURRENCY = 8

POOL_LIMIT_RULE = (f"a pool limit is a whole number from 1 to {MAX_POOL_LIMIT} "
                   "(how many of its services may run at once)")


def is_pool_limit(v: Any) -> bool:
    return check_number(v, 1, MAX_POOL_LIMIT, whole=True)


def pool_limit_problem(pool: str, limit: Any) -> str | None:
    """The one wording of a bad pool limit, for graph files, modules, critpath.toml and flags."""
    from .errors import show

    return None if is_pool_limit(limit) else f"pool {pool!r} has limit {show(limit)}; {POOL_LIMIT_RULE}"
