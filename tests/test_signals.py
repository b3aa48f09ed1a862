"""Reliability, cancellation: real SIGINT (to the CLI's process group, as a terminal sends
Ctrl-C) and SIGTERM to a running ``critpath run``.

    first, side -> long (records its pid, sleeps 60 s) -> after_long

Once ``long``'s pid is there, two services have completed, one is in flight and one has
not started; the signal must cancel the refresh, print how to resume it, and stop ``long``.

CLI tests run ``python -m orchestrator`` in a project folder of their own.

Nothing here mocks Prefect, Dask or Ray; nothing asserts a duration, only states, counts and
order. Waits are bounded so that a broken promise fails a test instead of hanging it.
"""
from __future__ import annotations

import shlex
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest

from orchestrator.ui.cli import resume_command
from tests.helpers.engines import engines
from tests.helpers.graphs import FAULTS
from tests.helpers.processes import Cli, critpath, gone, read_pid, wait_until
from tests.helpers.projects import graph_file, last_report
from tests.prefect_fixtures import api


def _cancel_project(project: Path) -> Path:
    """first, side -> long -> after_long. ``long`` records its pid and sleeps 60 s the first
    time it runs, and returns at once when resumed: once its pid is there, two services have
    completed, one is in flight and one not started."""
    pidfile = project / "long.pid"
    graph_file(project, [{"name": "first", "duration": 0.05},
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
    report = last_report(project)
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
    report = last_report(interrupted.project)
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
    assert _flow_run(prefect_server, last_report(tmp_path)["flow_run_id"]).state.type.value == "CANCELLED"
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
    report = last_report(tmp_path)
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
