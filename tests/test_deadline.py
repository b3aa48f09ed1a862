"""Deadlines end to end (issue 12): ``critpath run --deadline`` against a real Prefect server.

    extract -> slow -> transform -> publish
    extract -> side

Two plain runs fill the history (slow takes 1 s). Then:
  1. a deadline the history says it fits: met, never flagged, no event, the hook not called;
  2. the same graph with ``slow`` made much slower than its history (an environment variable its
     body reads; history is keyed by service name) and a deadline the slow run misses: flagged
     while slow runs, before the deadline and before transform (the rest of the critical path)
     starts; the ``critpath.deadline.at-risk`` event is read back through the server's events
     API, related to the flow run; the ``on_deadline_risk`` hook ran exactly once with the
     details; ``--deadline-fails`` makes the late but complete run exit 1;
  3. a deadline the plan already misses: flagged at once, the run late, and without
     ``--deadline-fails`` it exits 0.
Assertions are on order and states (report and hook timestamps), never on how long something took.
"""
from __future__ import annotations

import json
import sys
import time

import pytest

from tests.helpers.processes import critpath

pytestmark = pytest.mark.server

SLOW_ENV = "CRITPATH_TEST_SLOW_S"
NAP = "tests.helpers.naps:nap"
GRAPH = {"services": [
    {"name": "extract", "call": NAP, "params": {"seconds": 0.5}},
    {"name": "slow", "after": ["extract"], "call": NAP, "params": {"seconds": 1.0, "env": SLOW_ENV}},
    {"name": "transform", "after": ["slow"], "call": NAP, "params": {"seconds": 1.5}},
    {"name": "publish", "after": ["transform"], "call": NAP, "params": {"seconds": 0.5}},
    {"name": "side", "after": ["extract"], "call": NAP, "params": {"seconds": 0.3}}]}
HOOK = """\
import json, sys
details = json.load(sys.stdin)
with open("hook.jsonl", "a") as f:
    f.write(json.dumps(details) + "\\n")
"""
EVENTS_TIMEOUT_S = 60  # bounds the wait for the server to store the events; never an assertion


def _project(tmp_path):
    (tmp_path / "graph.json").write_text(json.dumps(GRAPH))
    (tmp_path / "hook.py").write_text(HOOK)
    hook = f"{sys.executable} hook.py"
    (tmp_path / "critpath.toml").write_text(f"on_deadline_risk = {json.dumps(hook)}\n")
    return tmp_path


def _run(project, api_url, *args, **env):
    proc = critpath("run", "--graph", "graph.json", "--no-progress", *args, cwd=project, api_url=api_url,
                    timeout=300, **env)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    report = json.loads((project / ".critpath" / "last-run.json").read_text())
    return proc, report


def _hook_calls(project) -> list[dict]:
    path = project / "hook.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _deadline_events(url: str, flow_run_ids: set[str], wait_for: int, since: float) -> list[dict]:
    """The critpath.deadline.* events related to those flow runs, once at least ``wait_for`` of
    them are stored (or the bound passes, and the assertions that follow say what was missing)."""
    import httpx

    body = {"filter": {"event": {"prefix": ["critpath.deadline."]},
                       "occurred": {"since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since - 60)),
                                    "until": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 600))}},
            "limit": 50}
    stop = time.monotonic() + EVENTS_TIMEOUT_S
    while True:
        response = httpx.post(f"{url}/events/filter", json=body, timeout=10)
        response.raise_for_status()
        found = [e for e in response.json()["events"]
                 if any(r.get("prefect.resource.role") == "flow-run"
                        and r.get("prefect.resource.id", "").removeprefix("prefect.flow-run.") in flow_run_ids
                        for r in e.get("related", []))]
        if len(found) >= wait_for or time.monotonic() > stop:
            return found
        time.sleep(0.5)


def test_a_deadline_is_flagged_before_it_is_missed(prefect_server, tmp_path):
    began = time.time()
    project = _project(tmp_path)
    for _ in range(2):  # the history: slow takes 1 s
        proc, _ = _run(project, prefect_server)
        assert proc.returncode == 0, proc.stderr[-3000:]

    # 1. it fits: met, nothing flagged, no hook
    proc, fits = _run(project, prefect_server, "--deadline", "+40s")
    assert proc.returncode == 0, proc.stderr[-3000:]
    d = fits["deadline"]
    assert set(d) >= {"at", "predicted_finish_at_start", "at_risk_at", "finished_at", "met"}
    assert d["met"] is True and d["at_risk_at"] is None and d["finished_at"] <= d["at"]
    assert d["predicted_finish_at_start"] < d["at"]
    assert "deadline at risk" not in proc.stderr and _hook_calls(project) == []
    assert "slack" in proc.stderr  # the start of the run says predicted finish and slack
    assert "deadline" in proc.stdout and " met: finished " in proc.stdout

    # 2. slow takes 14 s instead of 1 s: flagged while it runs, then missed; --deadline-fails: exit 1
    proc, late = _run(project, prefect_server, "--deadline", "+10s", "--deadline-fails", **{SLOW_ENV: "14"})
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    assert not late["failed"] and all(s["state"] == "completed" for s in late["services"].values())
    d, svc = late["deadline"], late["services"]
    assert d["predicted_finish_at_start"] < d["at"], "the history said it would fit"
    assert d["at_risk_at"] is not None and d["met"] is False and d["finished_at"] > d["at"]
    # flagged while slow ran, before the deadline, and while the rest of the critical path was ahead
    assert svc["slow"]["start"] < d["at_risk_at"] < d["at"]
    assert d["at_risk_at"] < svc["transform"]["start"] < svc["publish"]["start"]
    assert proc.stderr.count("critpath: deadline at risk:") == 1
    assert "remaining critical path: slow -> transform -> publish" in proc.stderr
    assert "DEADLINE MISSED" in proc.stdout

    calls = _hook_calls(project)
    assert len(calls) == 1, calls
    hook = calls[0]
    assert hook["event"] == "critpath.deadline.at-risk" and hook["kind"] == "at-risk"
    assert hook["flow_run_id"] == late["flow_run_id"] and hook["at"] == pytest.approx(d["at_risk_at"])
    assert hook["deadline"] == pytest.approx(d["at"]) and hook["projected_finish"] > d["at"]
    assert hook["late_by_s"] > 0 and hook["remaining_critical_path"] == ["slow", "transform", "publish"]
    assert hook["overrunning"] == ["slow"] and hook["running"]["slow"]["elapsed_s"] > hook["running"]["slow"]["p90_s"]

    events = _deadline_events(prefect_server, {late["flow_run_id"], fits["flow_run_id"]}, 1, began)
    assert [e["event"] for e in events] == ["critpath.deadline.at-risk"], events
    event = events[0]
    assert event["resource"]["prefect.resource.id"].startswith("critpath.refresh.")
    assert any(r.get("prefect.resource.id") == f"prefect.flow-run.{late['flow_run_id']}"
               and r.get("prefect.resource.role") == "flow-run" for r in event["related"]), event["related"]
    assert event["payload"]["remaining_critical_path"] == ["slow", "transform", "publish"]
    assert event["payload"]["flow_run_id"] == late["flow_run_id"]

    # 3. a deadline the plan already misses: flagged at once; late but complete exits 0
    proc, missed = _run(project, prefect_server, "--deadline", "+1s")
    assert proc.returncode == 0, proc.stderr[-3000:]
    d = missed["deadline"]
    assert "misses it by" in proc.stderr and "look at:" in proc.stderr
    assert d["at_risk_at"] is not None and d["at_risk_at"] <= missed["services"]["extract"]["end"]
    assert d["met"] is False and "DEADLINE MISSED" in proc.stdout
    assert len(_hook_calls(project)) == 2


@pytest.mark.parametrize("args, needles", [
    (["--deadline", "tomorrow"], ["--deadline 'tomorrow': not a time critpath reads", "HH:MM"]),
    (["--deadline", "2020-01-01T09:00"], ["ago", "a time in the future"]),
    (["--deadline", "+0s"], ["zero"]),
    (["--deadline", "-5m"], ["negative"]),
])
def test_bad_deadlines_are_one_line_and_run_nothing(tmp_path, args, needles):
    from tests.helpers.processes import assert_bad_input

    project = _project(tmp_path)
    for command in ("run", "plan"):
        proc = critpath(command, "--graph", "graph.json", *args, cwd=project)
        assert_bad_input(proc, *needles)
    assert not (project / ".critpath" / "last-run.json").exists()


def test_a_margin_longer_than_the_time_left_is_refused(tmp_path):
    from tests.helpers.processes import assert_bad_input

    project = _project(tmp_path)
    (project / "critpath.toml").write_text('deadline = "+5m"\ndeadline_margin = "10m"\n')
    assert_bad_input(critpath("run", "--graph", "graph.json", cwd=project), "deadline_margin 10 min is longer than",
                     "give a smaller deadline_margin")
    bad = critpath("plan", "--graph", "graph.json", "--deadline", "+1h", "--json", cwd=project)
    assert bad.returncode == 0, bad.stderr  # the flag wins over the config's deadline
    plan = json.loads(bad.stdout)["deadline"]
    assert plan["margin_s"] == 600 and plan["at_risk"] is False and plan["critical_path"][0] == "extract"


def test_served_runs_each_resolve_the_deadline_as_they_start(prefect_server, tmp_path):
    """``critpath serve --deadline +60s`` on a 5 s interval: each scheduled run counts the minute
    from its own start, so two runs have two deadlines, in their order, each after its own start."""
    import os
    import signal
    import subprocess

    from tests.helpers.processes import cli_env

    (tmp_path / "graph.json").write_text(json.dumps({"services": [
        {"name": "a", "duration": 0.05}, {"name": "b", "after": ["a"], "duration": 0.05}]}))
    log = open(tmp_path / "serve.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "serve", "--graph", "graph.json", "--interval", "5",
                             "--name", "deadline-5s", "--deadline", "+60s"], cwd=tmp_path,
                            env=cli_env(prefect_server, PREFECT_RUNNER_POLL_FREQUENCY="2"), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    runs = tmp_path / ".critpath" / "runs"
    server_side: list = []  # serve's child (Prefect's serve loop, a session of its own)
    try:
        stop = time.monotonic() + 180
        reports: list[dict] = []
        while time.monotonic() < stop and proc.poll() is None and len(reports) < 2:
            time.sleep(1)  # bounds the test; the reports are files another process writes
            reports = [json.loads(p.read_text()) for p in runs.glob("*.json")] if runs.exists() else []
        log.seek(0)
        assert len(reports) >= 2, log.read()[-3000:]
    finally:
        import psutil

        try:
            server_side = psutil.Process(proc.pid).children()
        except psutil.NoSuchProcess:
            pass
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        # whatever serve's own shutdown left behind must not outlive the test
        _, alive = psutil.wait_procs(server_side, timeout=15)
        for child in alive:
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    first, second = sorted(reports, key=lambda r: r["started_at"])[:2]
    for r in (first, second):
        d = r["deadline"]
        assert d["given"] == "+60s" and d["met"] is True and d["at_risk_at"] is None
        assert r["started_at"] < d["at"] and d["finished_at"] < d["at"]
    assert first["deadline"]["at"] < second["deadline"]["at"]
    assert second["started_at"] > first["deadline"]["finished_at"]
