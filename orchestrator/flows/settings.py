"""Prefect settings for the servers critpath itself starts.

Applied only when a refresh is about to talk to Prefect (``run()``, ``serve``, the
CLI's commands that run something), never at import: importing critpath's planner
must not change the environment.
"""
from __future__ import annotations

import os

FLUSH = "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL"

# Settings for a Prefect server that critpath itself starts (Prefect's temporary
# local server, `critpath server`). They only fill gaps: a user's own values win.
SERVER_DEFAULTS = {
    # no network here and no reason to phone home: keeps an ERROR line out of every run
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # the server stores task runs from events; one event per SQLite transaction
    # (Prefect's default) stores ~10 task runs a second here, far behind a refresh
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "500",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": "500",
    # whole seconds only: Prefect 3.8 sleeps int(flush_interval) between flushes, so 0.25 is
    # asyncio.sleep(0), a loop that keeps an idle server at ~70% of a core (see ``server_fixes``)
    FLUSH: "1",
    # the temporary server needs 5-15 s to answer on a busy 2-core machine; Prefect gives up at 20
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    # a served refresh queued behind another (deployment concurrency 1) is retried this long
    # after the slot was refused; Prefect's 30 s would leave a follow-up refresh idle that long
    "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "3",
}


def server_fixes(env: dict) -> dict:
    """What to change in ``env`` for a server critpath starts: Prefect 3.8.8's task-run recorder
    sleeps ``int(flush_interval)`` seconds between flushes, so a value under 1 s (0.25, say)
    becomes ``asyncio.sleep(0)``, a loop that keeps an idle server at ~70% of a core, a third
    of a 2-core machine, for as long as it runs. Such a value is read as 1 s."""
    try:
        value = float(env.get(FLUSH, "5"))
    except ValueError:
        return {}
    return {FLUSH: "1"} if 0 < value < 1 else {}


def prefect_env_defaults() -> None:
    for key, value in SERVER_DEFAULTS.items():
        os.environ.setdefault(key, value)
    os.environ.update(server_fixes(os.environ))
