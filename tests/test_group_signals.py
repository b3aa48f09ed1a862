"""Reliability, issue 10 §1: SIGTERM to ``critpath run``'s whole process group, as GNU
``timeout``, ``kill -- -PGID``, systemd and Kubernetes send it.

``critpath run`` starts in a session of its own (it leads its process group, as a service
manager's job does), with no PREFECT_API_URL, so critpath starts its own temporary Prefect
server. The graph::

    first, side -> long (records its pid, sleeps 60 s) -> after_long

Once ``long``'s pid is there, two services have completed, one is in flight and one has not
started. Then the whole group gets SIGTERM: critpath and every process of the engine that
shares its group (Dask's nannies and workers, for instance). What must hold: the run is
cancelled, not failed nor retried as lost workers; the summary, the resume command, the
report and the ledger are written; exit status 143; no traceback; the flow run ends Cancelled
on the server; and afterwards nothing critpath started is left running.

When the server itself is gone (killed), critpath says so in one line instead of retrying
for minutes, and still ends as above.

Nothing asserts a duration; the waits only bound a test that would otherwise hang (the
behaviour this replaces took 140-180 s to exit).
"""
from __future__ import annotations

import os
import signal
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from orchestrator.execution.ledger import completed_in
from tests.helpers.engines import engines
from tests.helpers.graphs import FAULTS
from tests.helpers.processes import Cli, gone, read_pid, wait_until
from tests.helpers.projects import graph_file, last_report
from tests.prefect_fixtures import api

#: bounds the wait for a cancelled critpath to exit (``long`` alone would take 60 s)
EXIT_BOUND_S = 45
#: bounds the wait for what critpath started to be gone after it exited
GONE_BOUND_S = 30
CANCELLED = "CANCELLED (SIGTERM received): 1 in flight (long), 1 not started"


def _project(project: Path) -> Path:
    pidfile = project / "long.pid"
    graph_file(project, [{"name": "first", "duration": 0.05},
                         {"name": "long", "after": ["first", "side"], "call": f"{FAULTS}:die_once",
                          "params": {"pidfile": str(pidfile), "seconds": 60}},
                         {"name": "after_long", "after": ["long"], "duration": 0.05},
                         {"name": "side", "duration": 0.05}])
    return pidfile


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _in_session(sid: int) -> list[psutil.Process]:
    """Every live process of session ``sid`` (critpath's: it was started as its leader)."""
    found = []
    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) == sid and _alive(p):
                found.append(p)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return found


def _descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def _temporary_servers(procs: list[psutil.Process]) -> list[psutil.Process]:
    def cmd(p):
        try:
            return " ".join(p.cmdline())
        except psutil.Error:
            return ""
    return [p for p in procs if "orchestrator.flows.tempserver" in cmd(p)]


def _assert_nothing_left(started: list[psutil.Process], sid: int) -> None:
    wait_until(lambda: not [p for p in started if _alive(p)] and not _in_session(sid), GONE_BOUND_S,
               "every process critpath started to be gone")


def _group_sigterm(project: Path, runner: str, api_url: str | None = None, also=None) -> SimpleNamespace:
    """``critpath run`` until ``long`` runs; SIGTERM to its group (and to ``also(started)``);
    what it printed, its status, its report and what it had started."""
    pidfile = _project(project)
    with Cli("run", "--graph", "g.json", "--runner", runner, "--workers", "3", cwd=project, api_url=api_url) as cli:
        worker = read_pid(pidfile)
        started = _descendants(cli.proc.pid)
        servers = _temporary_servers(started)
        cli.signal_group(signal.SIGTERM)
        for p in (also(started) if also else ()):
            p.send_signal(signal.SIGTERM)
        code = cli.wait(EXIT_BOUND_S)
    return SimpleNamespace(code=code, out=cli.stdout, err=cli.stderr, started=started, servers=servers,
                           sid=cli.proc.pid, worker=worker, report=last_report(project), project=project)


def _assert_cancelled(run: SimpleNamespace, runner: str) -> None:
    assert run.code == 143, f"exit status {run.code} (None: still running)\n{run.out}{run.err}"
    assert "critpath: SIGTERM received, cancelling the run" in run.err
    assert f"2/4 services completed on {runner}" in run.out, run.out + run.err
    assert CANCELLED in run.out, run.out + run.err
    assert "resume with: critpath run --graph g.json" in run.out
    assert "Traceback" not in run.err + run.out, run.err
    report = run.report
    assert report["cancel_reason"] == "SIGTERM received"
    assert {n: s["state"] for n, s in report["services"].items()} == {
        "first": "completed", "side": "completed", "long": "cancelled", "after_long": "not_run"}
    assert all(s["attempts"] <= 1 for s in report["services"].values()), report["services"]  # nothing retried
    assert completed_in(run.project / ".critpath", None)[1] == {"first", "side"}  # the ledger


@pytest.fixture(scope="module", params=engines("threads", "processes", "dask", "ray"))
def group_sigterm(request, tmp_path_factory) -> tuple[str, SimpleNamespace]:
    runner = request.param
    return runner, _group_sigterm(tmp_path_factory.mktemp(f"group-{runner}"), runner)


def test_group_sigterm_cancels_the_run_and_exits_143(group_sigterm):
    runner, run = group_sigterm
    _assert_cancelled(run, runner)


def test_group_sigterm_leaves_critpaths_temporary_server_up_to_record_the_cancel(group_sigterm):
    """The server critpath started is in a session of its own: the group signal does not
    reach it, so it records the flow run's Cancelled state and everything sent before."""
    runner, run = group_sigterm
    assert run.servers, [p.pid for p in run.started]
    assert "Finished in state Cancelled('SIGTERM received" in run.out + run.err
    assert "does not answer" not in run.err
    assert (run.report["prefect_errors"], run.report["prefect_confirmed"]) == ([], True)


def test_group_sigterm_leaves_nothing_running(group_sigterm):
    """Nothing of critpath's session (workers, a local cluster) and not its temporary
    server: the run's in-flight worker included."""
    runner, run = group_sigterm
    _assert_nothing_left(run.started, run.sid)
    wait_until(lambda: gone(run.worker), GONE_BOUND_S, f"worker {run.worker} running 'long' to be gone")


def test_group_sigterm_with_a_users_server_records_the_flow_run_cancelled(prefect_server, tmp_path):
    """With PREFECT_API_URL set, critpath starts no server; the flow run is Cancelled there."""
    from uuid import UUID

    from prefect.client.orchestration import get_client

    run = _group_sigterm(tmp_path, "threads", api_url=prefect_server)
    _assert_cancelled(run, "threads")
    assert not run.servers
    with api(prefect_server), get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(UUID(run.report["flow_run_id"]))
    assert flow_run.state.type.value == "CANCELLED", flow_run.state


def test_sigterm_to_the_whole_control_group_still_records_the_cancel(tmp_path):
    """systemd stops a service by signalling every process of its control group, the
    temporary server's session included: the server defers that SIGTERM until critpath,
    having cancelled the run and recorded it, lets go of it."""
    run = _group_sigterm(tmp_path, "processes", also=_temporary_servers)
    _assert_cancelled(run, "processes")
    assert "Finished in state Cancelled('SIGTERM received" in run.out + run.err
    assert run.report["prefect_errors"] == []
    _assert_nothing_left(run.started, run.sid)


def test_a_server_that_is_gone_costs_one_line_not_minutes_of_retries(tmp_path):
    """The temporary server is killed (SIGKILL) while ``long`` runs, then the group gets
    SIGTERM: the refresh ends as cancelled all the same, within the exit bound (Prefect's
    client alone would retry each request for about a minute), saying once that the
    server does not answer; the report carries the same line."""
    pidfile = _project(tmp_path)
    with Cli("run", "--graph", "g.json", "--runner", "threads", cwd=tmp_path, api_url=None) as cli:
        read_pid(pidfile)
        started = _descendants(cli.proc.pid)
        (server,) = _temporary_servers(started)
        server.kill()
        wait_until(lambda: not _alive(server), 30, "the killed server to be gone")  # a zombie until critpath reaps it
        cli.signal_group(signal.SIGTERM)
        code = cli.wait(EXIT_BOUND_S)
    run = SimpleNamespace(code=code, out=cli.stdout, err=cli.stderr, report=last_report(tmp_path), project=tmp_path)
    _assert_cancelled(run, "threads")
    lines = [ln for ln in run.err.splitlines() if "does not answer" in ln]
    assert len(lines) == 1 and lines[0].startswith("critpath: the Prefect server at http://127.0.0.1:"), run.err
    assert "the flow run's final state is not recorded there" in lines[0]
    assert any("does not answer" in e for e in run.report["prefect_errors"]), run.report["prefect_errors"]
    assert "Error logging to API" not in run.err
    _assert_nothing_left(started, cli.proc.pid)
