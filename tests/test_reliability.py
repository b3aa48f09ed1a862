"""Reliability: each fault is caused for real and the refresh's answer is checked.

Processes are killed with SIGKILL, the CLI gets real SIGINT/SIGTERM (to its process group,
as a terminal sends Ctrl-C), services hang in real sleeps, inputs are generated junk. No
mock of Prefect, Dask or Ray; nothing asserts a duration, only states, counts and order.
Waits are bounded so that a broken promise fails a test instead of hanging it.

    worker loss    victim (records its pid, sleeps; the test kills that pid) -> victim_child
                   bystander                                   on processes, dask, ray
    hung service   hung (never returns, timeout 1 s) -> hung_child
                   queued_1, queued_2, queued_3                max_concurrency 1, every runner
    secrets        leaky (logs its password, raises with it) -> leaky_child;  fine
    crash          a -> b, c -> d -> g;  e -> f -> g;  h       each appends a line, sleeps 0.5 s
    cancellation   first, side -> long (60 s) -> after_long
    load           10,000 services of 0-1 ms in 8 pools (limits 1-3), max_concurrency 8
    hostile input  generated graph files and critpath.toml, in-process and through the CLI

Engines (a thread pool, worker processes, a Dask cluster, a Ray instance) are started once
per module (``engine``) and each test runs its own refresh on them, against the session's
Prefect server. CLI tests run ``python -m orchestrator`` in a project folder of their own.
"""
from __future__ import annotations

import json
import os
import random
import shlex
import signal
import statistics
import uuid
from dataclasses import asdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.execution.dispatcher import Dispatcher
from orchestrator.execution.report import summary
from orchestrator.flows.flow import run
from orchestrator.inputs.config import load_config
from orchestrator.inputs.loaders import load_graph_file
from orchestrator.planning.errors import CritpathError
from orchestrator.planning.graph import Graph
from orchestrator.planning.model import Service
from orchestrator.planning.planner import make_plan
from orchestrator.planning.validate import validate
from orchestrator.ui.cli import resume_command
from orchestrator.ui.timeline import render_html
from runners.processes import ProcessRunner
from runners.threads import ThreadRunner
from tests.helpers.hostile import CONFIGS, DOCUMENTS, JUNK_TEXT, NAMES, to_toml
from tests.helpers.observers import EventLog
from tests.helpers.processes import Cli, critpath, gone, read_pid, wait_until
from tests.helpers.schedule import attempt_intervals, max_overlap, replay_problems
from tests.prefect_fixtures import api, readback
from tests.test_cli import assert_bad_input

FAULTS = "tests.helpers.faults"
ENGINE_WORKERS = 2
SECRET_NAME = "critpath_test_password"
SECRET_VAR = SECRET_NAME.upper()  # a CRITPATH_* name, as the refresh's own settings are



def _call(name: str, fn: str, after=(), **fields) -> Service:
    return Service(name, after=tuple(after), call=f"{FAULTS}:{fn}", params=fields.pop("params", {}), **fields)


def _sleep(name: str, seconds: float, after=(), **fields) -> Service:
    return Service(name, after=tuple(after), duration=seconds, **fields)


def _pid(worker: str) -> int:
    """``host:pid`` or ``host:pid/thread`` -> pid."""
    return int(worker.split(":", 1)[1].split("/", 1)[0])


def _graph_file(project: Path, services: list[dict], pools: dict | None = None) -> Path:
    project.mkdir(parents=True, exist_ok=True)
    path = project / "g.json"
    path.write_text(json.dumps({"services": services, **({"pools": pools} if pools else {})}))
    return path


def _last_report(project: Path) -> dict:
    return json.loads((project / ".critpath" / "last-run.json").read_text())


# -- engines, started once per module ----------------------------------------------------------

ENGINES = {
    "threads": pytest.param("threads", id="threads"),
    "processes": pytest.param("processes", id="processes"),
    "dask": pytest.param("dask", id="dask", marks=pytest.mark.dask),
    "ray": pytest.param("ray", id="ray", marks=pytest.mark.ray),
}


def engines(*names: str) -> list:
    return [ENGINES[n] for n in names]


@pytest.fixture(scope="module")
def password():
    """A credential in the environment before any engine starts (workers copy it then)."""
    value = f"pw-{uuid.uuid4().hex}"
    before = os.environ.get(SECRET_VAR)
    os.environ[SECRET_VAR] = value
    try:
        yield value
    finally:
        if before is None:
            os.environ.pop(SECRET_VAR, None)
        else:
            os.environ[SECRET_VAR] = before


@pytest.fixture(scope="module")
def engine(request, password):
    """An entered runner (``ENGINE_WORKERS`` slots) that every refresh of the module shares."""
    from runners import make_runner

    with make_runner(request.param, ENGINE_WORKERS) as runner:
        yield runner


def kill_when_recorded(pidfile: Path) -> int:
    """SIGKILL to the pid a service body wrote to ``pidfile``; returns that pid."""
    pid = read_pid(pidfile)
    os.kill(pid, signal.SIGKILL)
    return pid


# -- 1. worker loss -------------------------------------------------------------------------------

@pytest.mark.parametrize("engine", engines("processes", "dask", "ray"), indirect=True)
def test_a_killed_worker_is_replaced_and_its_service_retried(engine, prefect_server, tmp_path):
    """The victim's first attempt dies with its process; a lost worker earns one more attempt
    (the service has no retries of its own), which runs on another process."""
    pidfile = tmp_path / "victim.pid"
    graph = Graph([_call("victim", "die_once", params={"pidfile": str(pidfile), "seconds": 60}),
                   _sleep("victim_child", 0.05, ["victim"]), _sleep("bystander", 0.05)])
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
    assert _pid(second["worker"]) != killed
    assert report["services"]["victim_child"]["start"] >= second["end"]
    assert [n for n, s in report["services"].items() if s["lost_worker"]] == ["victim"]
    assert "LOST WORKER victim: attempt 1 died with its worker; completed after 2 attempt(s)" in summary(report)
    wait_until(lambda: gone(killed), 60, f"killed worker {killed} to be gone")


# -- 4. hung service --------------------------------------------------------------------------------

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
    graph = Graph([_call("hung", "hang", timeout=1.0, estimate=100.0, params=params),
                   _sleep("hung_child", 0.05, ["hung"]), *[_sleep(n, 0.05) for n in queued]])
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


# -- 7. secrets --------------------------------------------------------------------------------------

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
    graph = Graph([_call("leaky", "leak", params={"name": SECRET_NAME}), _sleep("leaky_child", 0.05, ["leaky"]),
                   _sleep("fine", 0.05)])
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
    graph = Graph([_call("leaky", "leak", params={"name": name})])
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
    _graph_file(tmp_path, [{"name": "leaky", "call": f"{FAULTS}:leak", "params": {"name": SECRET_NAME}},
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


# -- 2. orchestrator crash and resume ---------------------------------------------------------------

CRASH_GRAPH = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "e": [], "f": ["e"], "g": ["d", "f"], "h": []}
CRASH_ARGS = ("run", "--graph", "g.json", "--runner", "processes", "--workers", "2")


def _ledger(state: Path, run_id: str) -> list[str]:
    """The services in a run's ledger; a line still being written is not one yet."""
    path = state / "runs" / run_id / "ledger.jsonl"
    names = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            names.append(json.loads(line)["service"])
        except ValueError:
            pass
    return names


def _starts(project: Path) -> dict[str, int]:
    """How many times each service started: the lines its body appended (``faults.mark``)."""
    return {n: len((project / f"{n}.runs").read_text().split()) if (project / f"{n}.runs").exists() else 0
            for n in CRASH_GRAPH}


def _ledger_once_two_completed(state: Path) -> list[str] | None:
    marker = state / "last-run-id"
    done = _ledger(state, marker.read_text().strip()) if marker.exists() else []
    return done if len(done) >= 2 else None


@pytest.fixture(scope="module")
def crashed(prefect_server, tmp_path_factory):
    """``critpath run`` SIGKILLed (its whole process group: the CLI and its workers) once two
    services are in the ledger; then resumed three times: ``--resume`` (the last run),
    ``--resume <crashed run>`` again, ``--resume <the first resume>`` (all done)."""
    project = tmp_path_factory.mktemp("crash")
    state = project / ".critpath"
    _graph_file(project, [{"name": n, "after": ups, "call": f"{FAULTS}:mark",
                           "params": {"path": str(project / f"{n}.runs"), "seconds": 0.5}}
                          for n, ups in CRASH_GRAPH.items()])
    with Cli(*CRASH_ARGS, cwd=project, api_url=prefect_server) as cli:
        wait_until(lambda: _ledger_once_two_completed(state), 120, "two completed services in the ledger")
        cli.kill()
    run_id = (state / "last-run-id").read_text().strip()
    at_crash = _starts(project)
    workers = {int(pid) for n in CRASH_GRAPH if (project / f"{n}.runs").exists()
               for pid in (project / f"{n}.runs").read_text().split()}
    wait_until(lambda: all(gone(pid) for pid in workers), 30, "the killed workers to be gone")
    out = SimpleNamespace(project=project, run_id=run_id, ledger=_ledger(state, run_id), at_crash=at_crash,
                          stages=[])
    for resume in ((), (run_id,), None):
        if resume is None:  # the first resume completed everything: resuming it runs nothing
            resume = (out.stages[0].report["run_id"],)
        proc = critpath(*CRASH_ARGS, "--resume", *resume, cwd=project, api_url=prefect_server)
        out.stages.append(SimpleNamespace(proc=proc, report=_last_report(project), starts=_starts(project)))
    return out


def test_the_crash_came_mid_refresh(crashed):
    assert 2 <= len(crashed.ledger) < len(CRASH_GRAPH), crashed.ledger
    assert len(set(crashed.ledger)) == len(crashed.ledger)


def test_services_completed_before_the_crash_never_run_again(crashed):
    for stage in [crashed.at_crash, *(s.starts for s in crashed.stages)]:
        assert {n: stage[n] for n in crashed.ledger} == dict.fromkeys(crashed.ledger, 1)


def test_resume_runs_exactly_what_had_not_completed(crashed):
    """A service in flight at the kill had started (its line is there) but is not in the
    ledger: it runs again, so it starts twice in all; every other service starts once."""
    first = crashed.stages[0]
    assert first.proc.returncode == 0, first.proc.stdout + first.proc.stderr
    rest = sorted(set(CRASH_GRAPH) - set(crashed.ledger))
    assert sorted(first.report["services"]) == rest
    assert {n: (s["state"], s["attempts"]) for n, s in first.report["services"].items()} == \
        dict.fromkeys(rest, ("completed", 1))
    assert first.report["resumed"] == sorted(crashed.ledger)
    assert (first.report["resumed_from"], first.report["failed"]) == (crashed.run_id, [])
    assert {n: first.starts[n] - crashed.at_crash[n] for n in rest} == dict.fromkeys(rest, 1)
    assert set(crashed.at_crash[n] for n in rest) <= {0, 1}


def test_resume_of_an_explicit_run_id(crashed):
    again = crashed.stages[1]
    assert again.proc.returncode == 0, again.proc.stdout + again.proc.stderr
    rest = sorted(set(CRASH_GRAPH) - set(crashed.ledger))
    assert (again.report["resumed_from"], again.report["resumed"]) == (crashed.run_id, sorted(crashed.ledger))
    assert sorted(again.report["services"]) == rest
    before = crashed.stages[0].starts
    assert {n: again.starts[n] - before[n] for n in CRASH_GRAPH} == {n: int(n in rest) for n in CRASH_GRAPH}


def test_resuming_a_run_that_completed_everything_runs_nothing(crashed):
    last = crashed.stages[2]
    assert last.proc.returncode == 0, last.proc.stdout + last.proc.stderr
    assert (last.report["services"], last.report["resumed"]) == ({}, sorted(CRASH_GRAPH))
    assert last.starts == crashed.stages[1].starts


@pytest.mark.parametrize("resume,needle", [
    ((), "--resume: no earlier run in '.critpath'; run 'critpath run' first"),
    (("zzz",), "--resume 'zzz': not a run id"),
    (("../../etc/passwd",), "--resume '../../etc/passwd': not a run id"),
    (("0" * 32,), f"--resume '{'0' * 32}': no ledger at"),
])
def test_resume_with_nothing_to_resume_is_bad_input(tmp_path, resume, needle):
    _graph_file(tmp_path, [{"name": "a", "duration": 0.01}])
    assert_bad_input(critpath("run", "--graph", "g.json", "--resume", *resume, cwd=tmp_path), needle)
    assert not (tmp_path / ".critpath" / "runs").exists(), "nothing may run"


# -- 3. cancellation ------------------------------------------------------------------------------------

def _cancel_project(project: Path) -> Path:
    """first, side -> long -> after_long. ``long`` records its pid and sleeps 60 s the first
    time it runs, and returns at once when resumed: once its pid is there, two services have
    completed, one is in flight and one not started."""
    pidfile = project / "long.pid"
    _graph_file(project, [{"name": "first", "duration": 0.05},
                          {"name": "long", "after": ["first", "side"], "call": f"{FAULTS}:die_once",
                           "params": {"pidfile": str(pidfile), "seconds": 60}},
                          {"name": "after_long", "after": ["long"], "duration": 0.05},
                          {"name": "side", "duration": 0.05}])
    return pidfile


def _flow_run(url: str, flow_run_id: str):
    from uuid import UUID

    from prefect.client.orchestration import get_client

    with api(url), get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(flow_run_id))


@pytest.fixture(scope="module")
def interrupted(prefect_server, tmp_path_factory):
    """``critpath run --runner processes`` with ``long`` in flight; SIGINT to its process group."""
    project = tmp_path_factory.mktemp("sigint")
    pidfile = _cancel_project(project)
    with Cli("run", "--graph", "g.json", "--runner", "processes", "--workers", "3", cwd=project,
             api_url=prefect_server) as cli:
        worker = read_pid(pidfile)
        cli.signal_group(signal.SIGINT)
        code = cli.wait(60)
    report = _last_report(project)
    return SimpleNamespace(code=code, out=cli.stdout, err=cli.stderr, report=report, worker=worker,
                           project=project, run_id=(project / ".critpath" / "last-run-id").read_text().strip(),
                           flow_run=_flow_run(prefect_server, report["flow_run_id"]))


def test_sigint_exits_130_saying_what_was_done_and_how_to_resume(interrupted):
    """The Ctrl-C reached the workers too (one process group), which ignore it: the
    in-flight service is cancelled by critpath, not interrupted in its worker."""
    assert interrupted.code == 130, interrupted.out + interrupted.err
    assert ACKNOWLEDGED in interrupted.err
    assert "2/4 services completed on processes" in interrupted.out
    assert "CANCELLED (SIGINT received): 1 in flight (long), 1 not started" in interrupted.out
    assert f"resume with: critpath run --graph g.json --runner processes --workers 3 --resume " \
           f"{interrupted.run_id}\n" in interrupted.out
    assert "Traceback" not in interrupted.err, interrupted.err
    report = interrupted.report
    assert report["cancel_reason"] == "SIGINT received"
    assert {n: s["state"] for n, s in report["services"].items()} == {
        "first": "completed", "side": "completed", "long": "cancelled", "after_long": "not_run"}


def test_sigint_ends_the_flow_run_cancelled_in_prefect(interrupted):
    assert str(interrupted.flow_run.id) == interrupted.report["flow_run_id"]
    assert interrupted.flow_run.state.type.value == "CANCELLED", interrupted.flow_run.state


def test_sigint_stops_the_in_flight_worker_process(interrupted):
    wait_until(lambda: gone(interrupted.worker), 30, f"worker {interrupted.worker} running 'long' to be gone")


def test_the_printed_resume_command_finishes_the_refresh(interrupted, prefect_server):
    line = next(line for line in interrupted.out.splitlines() if line.startswith("resume with: "))
    args = shlex.split(line.removeprefix("resume with: "))
    assert args[0] == "critpath"
    proc = critpath(*args[1:], cwd=interrupted.project, api_url=prefect_server)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = _last_report(interrupted.project)
    assert report["resumed"] == ["first", "side"]
    assert {n: s["state"] for n, s in report["services"].items()} == {"long": "completed", "after_long": "completed"}


def test_sigterm_cancels_and_exits_143(prefect_server, tmp_path):
    """SIGTERM to the CLI alone, as ``kill PID`` or a service manager sends it."""
    pidfile = _cancel_project(tmp_path)
    with Cli("run", "--graph", "g.json", "--runner", "processes", "--workers", "3", cwd=tmp_path,
             api_url=prefect_server) as cli:
        worker = read_pid(pidfile)
        cli.proc.send_signal(signal.SIGTERM)
        code = cli.wait(60)
    assert code == 143, cli.stdout + cli.stderr
    assert "critpath: SIGTERM received, cancelling the run; send SIGTERM again to exit at once" in cli.stderr
    assert "CANCELLED (SIGTERM received): 1 in flight (long), 1 not started" in cli.stdout
    assert "resume with: critpath run " in cli.stdout
    assert _flow_run(prefect_server, _last_report(tmp_path)["flow_run_id"]).state.type.value == "CANCELLED"
    wait_until(lambda: gone(worker), 30, f"worker {worker} running 'long' to be gone")


@pytest.mark.parametrize("runner", engines("dask", "ray"))
def test_sigint_cancels_a_refresh_on_a_cluster_runner(runner, prefect_server, tmp_path):
    """The same Ctrl-C on the cluster runners: the Dask future or Ray task running ``long``
    is cancelled (its worker restarted or killed), the flow run ends Cancelled, and the CLI
    exits 130 long before ``long`` would have returned."""
    pidfile = _cancel_project(tmp_path)
    with Cli("run", "--graph", "g.json", "--runner", runner, "--workers", "3", cwd=tmp_path,
             api_url=prefect_server) as cli:
        read_pid(pidfile)
        cli.signal_group(signal.SIGINT)
        code = cli.wait(EXIT_BOUND_S)
    assert code == 130, f"exit status {code} (None: still running)\n{cli.stdout}{cli.stderr}"
    assert f"2/4 services completed on {runner}" in cli.stdout
    assert "CANCELLED (SIGINT received): 1 in flight (long), 1 not started" in cli.stdout
    assert "Traceback" not in cli.stderr, cli.stderr
    report = _last_report(tmp_path)
    assert {n: s["state"] for n, s in report["services"].items()} == {
        "first": "completed", "side": "completed", "long": "cancelled", "after_long": "not_run"}
    assert _flow_run(prefect_server, report["flow_run_id"]).state.type.value == "CANCELLED"


#: bounds a wait for a cancelled CLI to exit: ``long`` would sleep 60 s, so a process still
#: there after this is waiting for it (an upper bound on a hang, not a measurement)
EXIT_BOUND_S = 30


def test_one_sigint_is_enough_when_a_thread_cannot_be_stopped(prefect_server, tmp_path):
    """On threads, ``long`` sleeps in a thread that nothing can stop: the cancel abandons it,
    and the process exits without waiting for it."""
    pidfile = _cancel_project(tmp_path)
    with Cli("run", "--graph", "g.json", "--runner", "threads", "--workers", "3", cwd=tmp_path,
             api_url=prefect_server) as cli:
        read_pid(pidfile)
        cli.signal_group(signal.SIGINT)
        code = cli.wait(EXIT_BOUND_S)
    assert code == 130, f"exit status {code} (None: still running)\n{cli.stdout}{cli.stderr}"
    assert "CANCELLED (SIGINT received): 1 in flight (long), 1 not started" in cli.stdout
    assert "Traceback" not in cli.stderr, cli.stderr


ACKNOWLEDGED = "critpath: SIGINT received, cancelling the run; press Ctrl-C again to exit at once"


def test_a_second_sigint_exits_at_once(prefect_server, tmp_path):
    """The first SIGINT comes while critpath is still starting (importing Prefect takes
    seconds): the cancel is kept for when the run starts, and critpath says so at once. The
    second means "stop now": the process exits with 130 before any service starts or any
    report is written.

    The signal handlers are installed before ``.critpath/last-run-id`` is written, and the
    second SIGINT is sent once the first was acknowledged, so neither can be lost or merged."""
    pidfile = _cancel_project(tmp_path)
    state = tmp_path / ".critpath"
    with Cli("run", "--graph", "g.json", "--runner", "threads", cwd=tmp_path, api_url=prefect_server) as cli:
        wait_until((state / "last-run-id").exists, 120, "the run to begin")
        cli.signal_group(signal.SIGINT)
        cli.wait_for_output(ACKNOWLEDGED, 30)
        cli.signal_group(signal.SIGINT)
        code = cli.wait(EXIT_BOUND_S)
    assert code == 130, f"exit status {code} (None: still running)\n{cli.stdout}{cli.stderr}"
    assert "Traceback" not in cli.stderr, cli.stderr
    assert (pidfile.exists(), (state / "last-run.json").exists()) == (False, False), cli.stdout


@pytest.mark.parametrize("args,expected", [
    (["run", "--graph", "g.json"], "critpath run --graph g.json --resume NEW"),
    (["run", "--resume", "OLD", "--graph", "my g.json"], "critpath run --graph 'my g.json' --resume NEW"),
    (["run", "--graph", "g.json", "--resume"], "critpath run --graph g.json --resume NEW"),
    (["run", "--resume", "--runner", "dask"], "critpath run --runner dask --resume NEW"),
    (["run", "--resume=OLD", "--runner", "dask"], "critpath run --runner dask --resume NEW"),
], ids=["fresh", "resumed-run-id", "resumed-last-at-end", "resumed-last", "resumed-equals"])
def test_the_resume_command_of_a_resumed_run_names_only_the_new_run(args, expected):
    """A resumed run that is cancelled or fails again prints a command for the new run,
    with nothing left of the old ``--resume RUN_ID`` (a stray RUN_ID is a usage error)."""
    assert resume_command(args, "NEW") == expected


# -- 5. limits under load ----------------------------------------------------------------------------

LOAD_SERVICES = 10_000
LOAD_CONCURRENCY = 8
LOAD_POOLS = {f"pool_{i}": 1 + i % 3 for i in range(8)}  # limits 1, 2, 3, 1, 2, 3, 1, 2


def load_graph(seed: int = 5) -> Graph:
    """10,000 services of 0 or 1 ms, each in one of 8 pools, most after 0-2 recent others."""
    rng = random.Random(seed)
    services = []
    for i in range(LOAD_SERVICES):
        ups = rng.sample(range(max(0, i - 200), i), min(i, rng.choice([0, 0, 1, 2])))
        services.append(_sleep(f"s{i:05d}", rng.choice([0.0, 0.001]), [f"s{j:05d}" for j in ups],
                               pool=rng.choice(sorted(LOAD_POOLS))))
    return Graph(services, LOAD_POOLS)


def _reaction_ms(events) -> list[float]:
    """Each completion (as the dispatcher handled it) to the next dispatch, in ms."""
    out, pending = [], None
    for t, kind, _ in events:
        if kind == "complete" and pending is None:
            pending = t
        elif kind == "dispatch" and pending is not None:
            out.append((t - pending) * 1000)
            pending = None
    return out


def test_limits_hold_and_no_slot_idles_under_10000_services():
    graph = load_graph()
    with ThreadRunner(workers=LOAD_CONCURRENCY) as runner:
        dispatcher = Dispatcher(make_plan(graph, LOAD_CONCURRENCY), runner)
        runs = dispatcher.run()
    report = {"services": {n: {"attempt_history": [asdict(a) for a in r.history]} for n, r in runs.items()}}
    assert {(r.state, r.attempts) for r in runs.values()} == {("completed", 1)}
    assert max_overlap(attempt_intervals(report)) <= LOAD_CONCURRENCY
    for pool, limit in LOAD_POOLS.items():
        members = [n for n in graph.names if graph.services[n].pool == pool]
        assert max_overlap(attempt_intervals(report, members)) <= limit, pool
    assert replay_problems(dispatcher.events, graph, LOAD_CONCURRENCY) == []
    ms = _reaction_ms(dispatcher.events)
    q = statistics.quantiles(ms, n=100)
    print(f"\ndispatcher reaction, completion -> next dispatch ({len(ms)} samples): "
          f"p50 {q[49]:.3f} ms, p90 {q[89]:.3f} ms, p99 {q[98]:.3f} ms, max {max(ms):.3f} ms")


# -- 6. hostile input ----------------------------------------------------------------------------------

#: hypothesis settings: no per-example deadline (a loaded machine is slow, not wrong); tmp_path is
#: shared by the examples of one test, each writes its file afresh
FUZZ = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def check_graph_file(path: Path) -> None:
    """The property: CritpathError naming the file, or a graph that validates and plans."""
    try:
        graph = load_graph_file(path)
        validate(graph)
    except CritpathError as err:
        assert str(err).strip() and path.name in str(err), repr(err)
        return
    plan = make_plan(graph, 3)
    assert sorted(plan.to_json()["services"]) == graph.names


@settings(max_examples=200, **FUZZ)
@given(document=DOCUMENTS, fmt=st.sampled_from(["json", "toml"]))
def test_hostile_graph_documents(tmp_path, document, fmt):
    path = tmp_path / f"graph.{fmt}"
    path.write_text(json.dumps(document) if fmt == "json" else to_toml(document))
    check_graph_file(path)


@settings(max_examples=150, **FUZZ)
@given(names=st.lists(NAMES, min_size=1, max_size=8, unique=True), data=st.data())
def test_random_and_cyclic_graphs(tmp_path, names, data):
    """Services after any others, cycles and self-loops included: reported, or planned."""
    services = [{"name": n, "duration": data.draw(st.floats(0, 10)), "after": data.draw(st.lists(
        st.sampled_from(names), max_size=3))} for n in names]
    path = tmp_path / "graph.json"
    path.write_text(json.dumps({"services": services}))
    check_graph_file(path)


@settings(max_examples=100, **FUZZ)
@given(text=JUNK_TEXT | st.binary(max_size=40), fmt=st.sampled_from(["json", "toml"]))
def test_junk_graph_files(tmp_path, text, fmt):
    path = tmp_path / f"graph.{fmt}"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    check_graph_file(path)


SAMPLE = Graph([_sleep("extract", 1.0, pool="db"), _sleep("load", 1.0, ["extract"])], {"db": 1})


def check_config(folder: Path) -> None:
    """The property: CritpathError naming the file, or a config the sample graph plans with."""
    try:
        cfg = load_config(folder=folder)
    except CritpathError as err:
        assert str(err).strip() and "critpath.toml" in str(err), repr(err)
        return
    make_plan(Graph(list(SAMPLE), {**SAMPLE.pools, **cfg.pools}), cfg.max_concurrency or cfg.workers or 8)


@settings(max_examples=200, **FUZZ)
@given(config=CONFIGS)
def test_hostile_config_files(tmp_path, config):
    (tmp_path / "critpath.toml").write_text(to_toml(config))
    check_config(tmp_path)


BIG = 10**400


@pytest.mark.parametrize("text", [
    f"timeout = {BIG}", f"retry_delay = {BIG}", f"time_scale = {BIG}", f"workers = {BIG}",
    f"max_concurrency = {BIG}", f"[pools]\ndb = {BIG}", "workers = " + "[" * 5000 + "]" * 5000,
    "workers = 1" + "0" * 5000,
], ids=["timeout", "retry_delay", "time_scale", "workers", "max_concurrency", "pool", "nesting", "digits"])
def test_config_beyond_what_a_number_or_the_parser_holds(tmp_path, text):
    (tmp_path / "critpath.toml").write_text(text + "\n")
    check_config(tmp_path)


CYCLE = {"services": [{"name": "a", "after": ["b"], "duration": 1}, {"name": "b", "after": ["a"], "duration": 1}]}


@pytest.mark.parametrize("files,needle", [
    ({"g.json": ""}, "graph file 'g.json' is empty"),
    ({"g.json": json.dumps(CYCLE)}, "cycle a -> b -> a"),
    ({"g.json": "[" * 100_000 + "]" * 100_000}, "g.json: nested too deeply to read"),
    ({"g.json": '{"services": [{"name": "☃", "duration": 1e999}]}'}, "'duration' must be a finite number"),
    ({"g.json": json.dumps({"services": [{"name": "a\u202eb", "duration": 1}]})}, "control characters"),
    ({"g.json": json.dumps(CYCLE), "critpath.toml": "workers = 'many'\n"}, "workers = 'many'"),
], ids=["empty", "cycle", "nested", "infinite", "bidi", "config"])
def test_cli_rejects_hostile_input_in_one_line(tmp_path, files, needle):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert_bad_input(critpath("plan", "--graph", "g.json", cwd=tmp_path), needle)


@pytest.mark.parametrize("args,config,needle", [
    pytest.param(("plan", "--pool", "db=²"), "", "--pool 'db=²'", id="superscript-pool-limit"),
    pytest.param(("plan", "--max-concurrency", str(BIG)), "", "'--max-concurrency'", id="huge-max-concurrency"),
    pytest.param(("plan",), f"max_concurrency = {BIG}", "max_concurrency = ", id="huge-config-number"),
    pytest.param(("plan",), "retry_delay = " + "[" * 5000 + "]" * 5000, "critpath.toml", id="nested-config"),
    pytest.param(("run", "--runner", "threads"), 'state_dir = "/dev/null/state"', "state_dir '/dev/null/state'",
                 id="unusable-state-dir"),
    pytest.param(("plan", "--max-concurrency", "0"), "", "'--max-concurrency': 0 is not in the range",
                 id="zero-max-concurrency"),
])
def test_cli_input_that_is_reported_in_one_line(tmp_path, args, config, needle):
    """Numbers past a float or the parser, an unusable state_dir and click's own checks all end
    like any other bad input: one line naming the key or option, exit 2."""
    _graph_file(tmp_path, [{"name": "a", "duration": 0.01, "pool": "db"}], pools={"db": 1})
    (tmp_path / "critpath.toml").write_text(config + "\n")
    assert_bad_input(critpath(args[0], "--graph", "g.json", *args[1:], cwd=tmp_path), needle)


def _tree(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


NASTY_NAMES = ["../../etc/x", "/abs", "a/b", "..", ".", "~", "$HOME", "a\\b", "ünï ☃", "名前", "nul"]


def test_service_names_cannot_steer_a_path_out_of_the_state_folder(prefect_server, tmp_path):
    """critpath derives no file name from a service name (the ledger's run id is generated):
    such names run, and every file the run creates is inside the project's .critpath."""
    project = tmp_path / "one" / "two" / "project"  # '../../etc/x' from here stays inside tmp_path
    _graph_file(project, [{"name": n, "duration": 0.01, **({"after": [NASTY_NAMES[i - 1]]} if i % 2 else {})}
                          for i, n in enumerate(NASTY_NAMES)])
    before, root_before = _tree(tmp_path), set(os.listdir("/"))
    proc = critpath("run", "--graph", "g.json", cwd=project, api_url=prefect_server)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {n: s["state"] for n, s in _last_report(project)["services"].items()} == \
        dict.fromkeys(NASTY_NAMES, "completed")
    created = _tree(tmp_path) - before
    assert created and [p for p in created if not p.is_relative_to(project / ".critpath")] == []
    assert set(os.listdir("/")) - root_before == set()
