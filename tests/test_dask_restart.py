"""Dask: what the runner's own worker restart kills is reported as exactly that.

    one worker, one thread:   hang (running)   next (sent to the same worker, waiting)

Cancelling ``hang`` restarts that worker, which kills ``next`` with it. The restart is
the runner's doing, so ``next`` must come back as ``RestartedWorkerLost``, which the
dispatcher sends again without counting an attempt (tests/unit/test_dispatcher_policy.py);
a plain ``WorkerLost`` would cost it an attempt, and two such restarts could fail it.
A worker killed by someone else stays a lost worker (see tests/test_worker_loss.py).
"""
from __future__ import annotations

import queue

import pytest

from runners.base import Job, Outcome, RestartedWorkerLost
from runners.dask import DaskRunner
from tests.helpers.processes import gone, wait_until

pytestmark = pytest.mark.dask


def test_a_job_killed_by_our_own_restart_is_reported_as_such(tmp_path):
    pidfile = tmp_path / "hang.pid"
    outcomes: queue.SimpleQueue = queue.SimpleQueue()
    with DaskRunner(workers=1) as runner:
        hang = runner.submit(Job("hang#1", "hang", "tests.helpers.faults:hang", {"pidfile": str(pidfile)}),
                             1.0, lambda out: outcomes.put(("hang", out)))
        wait_until(pidfile.exists, 60, "the hung body never started")
        nxt = runner.submit(Job("next#1", "next", duration=0.05), 0.0, lambda out: outcomes.put(("next", out)))
        # Dask sends a worker a little more than its thread count: next waits on hang's worker
        wait_until(lambda: any(nxt.key in keys for keys in runner.client.processing().values()),
                   60, "next was never sent to the worker")
        runner.cancel(hang)
        got = dict(outcomes.get(timeout=120) for _ in range(2))
        assert isinstance(got["next"], RestartedWorkerLost), got["next"]
        assert not isinstance(got["hang"], Outcome)  # cancelled: the dispatcher ignores it
        # the worker really was restarted: the hung body's process is gone
        pid = int(pidfile.read_text())
        wait_until(lambda: gone(pid), 60, "the exit of the hung body's worker process")


def test_a_local_cluster_keeps_quiet_when_port_8787_is_taken():
    """Dask's scheduler serves HTTP routes on 8787 by default, dashboard or not, and warns
    when another cluster (a user's, a second refresh) holds the port; critpath's takes any."""
    import socket
    import warnings

    held = socket.socket()
    try:
        held.bind(("127.0.0.1", 8787))
        held.listen()
    except OSError:
        held.close()
        held = None  # someone else holds it: the case under test all the same
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with DaskRunner(workers=1):
                pass
    finally:
        if held is not None:
            held.close()
    assert not [w for w in caught if "already in use" in str(w.message)], [str(w.message) for w in caught]
