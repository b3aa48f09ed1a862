"""Reliability, a hung service: stopped at its timeout while the rest of the refresh goes on.

    hung (never returns, timeout 1 s) -> hung_child
    queued_1, queued_2, queued_3                max_concurrency 1, every runner

Engines (``engine``, tests/helpers/engines.py) are started once per module and each test
runs its own refresh on them, against the session's Prefect server.

Nothing here mocks Prefect, Dask or Ray; nothing asserts a duration, only states, counts and
order. Waits are bounded so that a broken promise fails a test instead of hanging it.
"""
from __future__ import annotations

import os

import pytest

from orchestrator.flows.flow import run
from orchestrator.planning.graph import Graph
from tests.helpers.engines import engines
from tests.helpers.graphs import fault, synth
from tests.helpers.observers import EventLog
from tests.helpers.processes import gone, wait_until
from tests.prefect_fixtures import api


@pytest.mark.parametrize("engine", engines("threads", "processes", "dask", "ray"), indirect=True)
def test_a_hung_service_is_stopped_at_its_timeout_and_the_rest_goes_on(engine, prefect_server, tmp_path):
    """One slot: ``hung`` (the highest priority) takes it and never returns. At its 1 s timeout
    the attempt ends, the slot goes to the queued services, and the runner stops the body:
    processes kills the worker, Dask restarts it (asynchronously), Ray kills it. A thread
    cannot be killed: its attempt is abandoned, the slot freed, and the body keeps running
    until it returns by itself (here: when the test releases it)."""
    pidfile, release, ended = tmp_path / "hung.pid", tmp_path / "release", tmp_path / "ended"
    in_process = engine.name == "threads"
    params = {"pidfile": str(pidfile), **({"release": str(release), "ended": str(ended)} if in_process else {})}
    queued = ["queued_1", "queued_2", "queued_3"]
    graph = Graph([fault("hung", "hang", timeout=1.0, estimate=100.0, params=params),
                   synth("hung_child", 0.05, ["hung"]), *[synth(n, 0.05) for n in queued]])
    log = EventLog()
    try:
        with api(prefect_server):
            report = run(graph, engine, max_concurrency=1, observers=[log])
        body_outlived_the_refresh = not ended.exists()
    finally:
        release.touch()
    hung = report["services"]["hung"]
    assert (hung["state"], hung["attempts"]) == ("failed", 1)
    assert "TimeoutError" in hung["error"], hung["error"]
    assert report["skipped"] == ["hung_child"]
    assert report["services"]["hung_child"]["skipped_because"] == "hung"
    assert [report["services"][n]["state"] for n in queued] == ["completed"] * 3
    order = [f"{kind} {name}" for _, kind, name in log.events if kind in ("dispatch", "fail", "skip")]
    assert order[:3] == ["dispatch hung", "fail hung", "skip hung_child"]
    assert {entry.split()[1] for entry in order[3:]} == set(queued)  # all dispatched after the timeout
    if in_process:
        assert body_outlived_the_refresh, "the hung body returned first: the queued services may have waited for it"
        wait_until(ended.exists, 30, "the released body to return")
    else:
        pid = int(pidfile.read_text())
        assert pid != os.getpid()
        wait_until(lambda: gone(pid), 90, f"the {engine.name} worker {pid} running 'hung' to be stopped")
