"""A service body whose duration a test can change from outside: ``call="tests.helpers.naps:nap"``.

History is keyed by service name, so a test makes one service much slower than its history says
by setting the environment variable named in its params, without touching the graph.
It imports nothing from the orchestrator or Prefect.
"""
from __future__ import annotations

import os
import time


def nap(seconds: float, env: str | None = None) -> float:
    """Sleeps ``seconds``, or the number of seconds in the environment variable ``env`` when set."""
    took = float(os.environ[env]) if env and os.environ.get(env) else seconds
    time.sleep(took)
    return took
