"""Scheduled refreshes for real: ``critpath serve`` against a real Prefect server.

Serves a small graph on a 5 s interval, reads back through the Prefect API two
scheduled flow runs of the deployment that completed with every service
Completed, then stops ``serve`` with Ctrl-C (SIGINT) and checks it exits cleanly.

    extract -> transform -> publish
    extract -> check
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.server

GRAPH = {"services": [
    {"name": "extract", "duration": 0.05},
    {"name": "transform", "after": ["extract"], "duration": 0.05},
    {"name": "check", "after": ["extract"], "duration": 0.05},
    {"name": "publish", "after": ["transform"], "duration": 0.05}]}


async def _completed_runs(url: str, deployment: str):
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.sorting import FlowRunSort, TaskRunSort

    async with PrefectClient(url) as client:
        runs = await client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=["COMPLETED"]))),
            limit=50, offset=0, sort=FlowRunSort.EXPECTED_START_TIME_ASC)
        out = []
        for fr in runs:
            trs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[fr.id])),
                                              limit=50, offset=0, sort=TaskRunSort.NAME_ASC)
            out.append((fr, {t.name: t.state.type.value for t in trs}))
        return out


def test_serve_runs_refreshes_on_schedule(prefect_server, tmp_path):
    (tmp_path / "graph.json").write_text(json.dumps(GRAPH))
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "PYTHONPATH": str(ROOT),
           "PREFECT_RUNNER_POLL_FREQUENCY": "2", "NO_COLOR": "1"}
    log = open(tmp_path / "serve.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "serve", "--graph", "graph.json",
                             "--interval", "5", "--name", "every-5s"], cwd=tmp_path, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        done: list = []
        while time.monotonic() < deadline and proc.poll() is None:
            # all four task runs must be final too: the server stores them from events
            done = [(fr, states) for fr, states in asyncio.run(_completed_runs(prefect_server, "every-5s"))
                    if len(states) == 4]
            if len(done) >= 2:
                break
            time.sleep(1)  # bounds the test; nothing here waits on critpath's own state
        assert len(done) >= 2, (tmp_path / "serve.log").read_text()[-3000:]
        for fr, states in done[:2]:
            assert fr.deployment_id is not None and fr.state.name == "Completed"
            assert states == dict.fromkeys(["check", "extract", "publish", "transform"], "COMPLETED")
        # each scheduled run also left its report in the project's state folder
        reports = list((tmp_path / ".critpath" / "runs").glob("*.json"))
        assert {str(fr.id) for fr, _ in done[:2]} <= {p.stem for p in reports}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                pytest.fail("critpath serve did not stop within 60 s of Ctrl-C")
    log.seek(0)
    output = log.read()
    assert proc.returncode in (0, 130), output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    # serve's own serving process (a session of its own) stopped with it: nothing left running
    from tests.helpers.processes import wait_until

    def serving_left():
        import psutil

        return [p for p in psutil.process_iter(["cmdline", "cwd"])
                if "orchestrator.flows.serving" in " ".join(p.info["cmdline"] or ()) and p.info["cwd"] == str(tmp_path)]

    wait_until(lambda: not serving_left(), 60, "the serving process to stop after Ctrl-C")
