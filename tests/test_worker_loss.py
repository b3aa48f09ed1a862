"""Reliability, worker loss: a worker process is killed mid-service (processes, Dask, Ray).

    victim (records its pid, sleeps; the test SIGKILLs that pid) -> victim_child
    bystander

Engines (``engine``, tests/helpers/engines.py) are started once per module and each test
runs its own refresh on them, against the session's Prefect server.

Nothing here mocks Prefect, Dask or Ray; nothing asserts a duration, only states, counts and
order. Waits are bounded so that a broken promise fails a test instead of hanging it.
"""
from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from orchestrator.flows.flow import run
from orchestrator.planning.graph import Graph
from orchestrator.ui.summary import summary
from tests.helpers.engines import engines
from tests.helpers.graphs import fault, synth, worker_pid
from tests.helpers.processes import gone, read_pid, wait_until
from tests.prefect_fixtures import api


def kill_when_recorded(pidfile: Path) -> int:
    """SIGKILL to the pid a service body wrote to ``pidfile``; returns that pid."""
    pid = read_pid(pidfile)
    os.kill(pid, signal.SIGKILL)
    return pid


@pytest.mark.parametrize("engine", engines("processes", "dask", "ray"), indirect=True)
def test_a_killed_worker_is_replaced_and_its_service_retried(engine, prefect_server, tmp_path):
    """The victim's first attempt dies with its process; a lost worker earns one more attempt
    (the service has no retries of its own), which runs on another process."""
    pidfile = tmp_path / "victim.pid"
    graph = Graph([fault("victim", "die_once", params={"pidfile": str(pidfile), "seconds": 60}),
                   synth("victim_child", 0.05, ["victim"]), synth("bystander", 0.05)])
    with ThreadPoolExecutor(1) as killer:
        kill = killer.submit(kill_when_recorded, pidfile)
        with api(prefect_server):
            report = run(graph, engine, max_concurrency=2)
        killed = kill.result()
    assert (report["failed"], report["skipped"]) == ([], [])
    assert {n: s["state"] for n, s in report["services"].items()} == dict.fromkeys(graph.names, "completed")
    victim = report["services"]["victim"]
    assert (victim["attempts"], victim["lost_worker"]) == (2, True)
    first, second = victim["attempt_history"]
    assert (first["lost"], first["ok"], second["lost"], second["ok"]) == (True, False, False, True)
    assert first["error"].startswith("WorkerLost: "), first["error"]
    assert worker_pid(second["worker"]) != killed
    assert report["services"]["victim_child"]["start"] >= second["end"]
    assert [n for n, s in report["services"].items() if s["lost_worker"]] == ["victim"]
    assert "LOST WORKER victim: attempt 1 died with its worker; completed after 2 attempt(s)" in summary(report)
    wait_until(lambda: gone(killed), 60, f"killed worker {killed} to be gone")
