"""Reliability, secrets: a credential a service reads never leaves its worker unmasked.

    leaky (logs its password, raises with it) -> leaky_child;  fine

The credential comes from the environment (``password``, set before the engines start) or
from a Prefect Secret block; it must not appear in Prefect's logs and states, the report,
the timeline, Ray's session logs or the CLI's output.

Engines (``engine``, tests/helpers/engines.py) are started once per module and each test
runs its own refresh on them, against the session's Prefect server.
CLI tests run ``python -m orchestrator`` in a project folder of their own.

Nothing here mocks Prefect, Dask or Ray; nothing asserts a duration, only states, counts and
order. Waits are bounded so that a broken promise fails a test instead of hanging it.
"""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from orchestrator.flows.flow import run
from orchestrator.planning.graph import Graph
from orchestrator.ui.timeline import render_html
from runners.processes import ProcessRunner
from tests.helpers.engines import SECRET_NAME, SECRET_VAR, engines
from tests.helpers.graphs import FAULTS, fault, synth
from tests.helpers.processes import critpath
from tests.helpers.projects import graph_file
from tests.prefect_fixtures import api, readback


def _flow_run_texts(url: str, flow_run_id: str, rb) -> dict[str, str]:
    """What Prefect holds as text about one flow run: every log line (of the flow run and
    of its task runs) and every state message."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort

    logs, offset = [], 0
    with api(url), get_client(sync_client=True) as client:
        while True:
            page = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(flow_run_id)])),
                                    sort=LogSort.TIMESTAMP_ASC, limit=200, offset=offset)
            logs += [g.message for g in page]
            offset += len(page)
            if len(page) < 200:
                break
    states = [rb.flow_run.state.message or ""] + [tr.state.message or "" for tr in rb.task_runs.values()]
    return {"logs": "\n".join(logs), "states": "\n".join(states)}


@pytest.mark.parametrize("engine", engines("threads", "processes", "dask", "ray"), indirect=True)
def test_a_secret_never_leaves_its_worker(engine, password, prefect_server):
    """``leaky`` reads the password, logs it (its own INFO line, another library's WARNING)
    and raises with it. The worker masks it: Prefect, the report and the timeline see ***."""
    graph = Graph([fault("leaky", "leak", params={"name": SECRET_NAME}), synth("leaky_child", 0.05, ["leaky"]),
                   synth("fine", 0.05)])
    with api(prefect_server):
        report = run(graph, engine, max_concurrency=2)
    leaky = report["services"]["leaky"]
    assert (leaky["state"], leaky["error"]) == ("failed", "PermissionError: login refused for password '***'")
    assert report["skipped"] == ["leaky_child"] and report["services"]["fine"]["state"] == "completed"
    rb = readback(prefect_server, report["flow_run_id"], graph.names,
                  expect_logs={"leaky": "connecting with password ***"})
    assert "login as admin:***@db" in rb.messages("leaky")  # the other library's line was carried back
    places = {"report": json.dumps(report), "timeline": render_html(report),
              **_flow_run_texts(prefect_server, report["flow_run_id"], rb)}
    assert "***" in places["logs"]
    assert [where for where, text in places.items() if password in text] == []


def test_a_secret_from_a_prefect_secret_block_is_masked_too(prefect_server, monkeypatch):
    """The same leak with the credential in a Prefect Secret block (no environment variable
    of that name): the service gets the value, and nothing that leaves it holds it. The
    body runs in a worker process, which finds the API as a user's would: from the
    environment it was started with, not from the test's settings context."""
    from prefect.blocks.system import Secret

    monkeypatch.setenv("PREFECT_API_URL", prefect_server)
    name, value = f"critpath-block-{uuid.uuid4().hex[:8]}", f"blk-{uuid.uuid4().hex}"
    assert name.upper() not in os.environ
    graph = Graph([fault("leaky", "leak", params={"name": name})])
    with api(prefect_server):
        Secret(value=value).save(name)
        with ProcessRunner(workers=1) as runner:
            report = run(graph, runner, max_concurrency=1)
    # '***' (not a LookupError) shows the block was read and its value registered
    assert report["services"]["leaky"]["error"] == "PermissionError: login refused for password '***'"
    rb = readback(prefect_server, report["flow_run_id"], graph.names,
                  expect_logs={"leaky": "connecting with password ***"})
    places = {"report": json.dumps(report), "timeline": render_html(report),
              **_flow_run_texts(prefect_server, report["flow_run_id"], rb)}
    assert [where for where, text in places.items() if value in text] == []


@pytest.mark.parametrize("engine", engines("ray"), indirect=True)
def test_ray_writes_no_secret_to_its_session_logs(engine, password):
    """The password is in this process's environment when the local Ray instance starts (the
    ``password`` fixture); Ray writes whatever it is given in ``runtime_env`` to these logs."""
    import ray

    # Ray has no public accessor for the session folder of the instance this process started
    session = Path(ray._private.worker.global_worker.node.get_session_dir_path())
    holding = [str(p.relative_to(session)) for p in (session / "logs").rglob("*")
               if p.is_file() and password in p.read_text(errors="replace")]
    assert holding == []


@pytest.mark.parametrize("runner", ["threads", "processes"])
def test_a_secret_stays_out_of_the_cli_output(runner, prefect_server, tmp_path):
    """On threads the service runs in the CLI's own process: another library's WARNING goes to
    its console handler as it is logged, so it must be masked when the record is made."""
    value = f"pw-{uuid.uuid4().hex}"
    graph_file(tmp_path, [{"name": "leaky", "call": f"{FAULTS}:leak", "params": {"name": SECRET_NAME}},
                          {"name": "leaky_child", "after": ["leaky"], "duration": 0.05},
                          {"name": "fine", "duration": 0.05}])
    proc = critpath("run", "--graph", "g.json", "--runner", runner, cwd=tmp_path, api_url=prefect_server,
                    **{SECRET_VAR: value})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAILED  leaky after 1 attempt(s): PermissionError: login refused for password '***'" in proc.stdout
    state = tmp_path / ".critpath"
    places = {"stdout": proc.stdout, "stderr": proc.stderr, "report": (state / "last-run.json").read_text(),
              "timeline": (state / "last-run.html").read_text()}
    assert [where for where, text in places.items() if value in text] == []
    if runner == "threads":  # printed, masked: not silenced
        assert "login as admin:***@db" in proc.stderr, proc.stderr
