"""Reliability, one refresh per state folder: ``<state_dir>/lock`` (issue 10 §8).

A ``critpath run`` holds the lock for its whole run (a service that blocks until the test
releases or kills it). A second ``critpath run`` in the same folder waits, saying so once on
stderr with the holder's pid, and creates no run until it has the lock; with ``--no-wait`` it
refuses in one line (exit 2); Ctrl-C while it waits ends it (130) with nothing run. The kernel
releases the lock when the holder dies, even by SIGKILL.

    hold (blocks until released, up to 120 s)        quick (0.01 s)

CLI tests run ``python -m orchestrator`` in a project folder of their own, against the session's
Prefect server. Nothing asserts a duration; waits are bounded so that a broken promise fails a
test instead of hanging it.
"""
from __future__ import annotations

import signal
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from tests.helpers.graphs import FAULTS, SERVICES
from tests.helpers.processes import Cli, assert_bad_input, critpath, gone, read_pid
from tests.helpers.projects import graph_file, last_report

RUN = ("run", "--graph", "g.json", "--runner", "threads", "--workers", "2")


def _runs(project: Path) -> set[str]:
    runs = project / ".critpath" / "runs"
    return {p.name for p in runs.iterdir()} if runs.is_dir() else set()


@pytest.fixture(scope="module")
def holder(prefect_server, tmp_path_factory):
    """A ``critpath run --select hold`` holding the state folder's lock, ``hold`` in flight."""
    project = tmp_path_factory.mktemp("locked")
    graph_file(project, [
        {"name": "hold", "call": f"{SERVICES}:hang",
         "params": {"seconds": 120, "ended": str(project / "hold.ended"), "release": str(project / "release"),
                    "pidfile": str(project / "hold.pid")}},
        {"name": "quick", "call": f"{FAULTS}:mark", "params": {"path": str(project / "quick.runs"),
                                                               "seconds": 0.01}}])
    with Cli(*RUN, "--select", "hold", cwd=project, api_url=prefect_server) as cli:
        read_pid(project / "hold.pid")  # its run has begun: it holds the lock
        yield SimpleNamespace(cli=cli, project=project, url=prefect_server, runs=_runs(project),
                              lock=project / ".critpath" / "lock")
        (project / "release").touch()


def test_the_holder_has_its_pid_in_the_lock(holder):
    assert holder.lock.read_text() == f"{holder.cli.proc.pid}\n"
    assert len(holder.runs) == 1


def test_no_wait_refuses_in_one_line_and_runs_nothing(holder):
    proc = critpath(*RUN, "--select", "quick", "--no-wait", cwd=holder.project, api_url=holder.url)
    assert_bad_input(proc, f"another refresh holds '.critpath/lock' (pid {holder.cli.proc.pid})", "--no-wait")
    assert len([ln for ln in proc.stderr.splitlines() if ln.strip()]) == 1, proc.stderr
    assert _runs(holder.project) == holder.runs
    assert not (holder.project / "quick.runs").exists()


def test_ctrl_c_while_waiting_exits_130_and_runs_nothing(holder):
    with Cli(*RUN, "--select", "quick", cwd=holder.project, api_url=holder.url) as waiter:
        waiter.wait_for_output("waiting...")
        waiter.signal_group(signal.SIGINT)
        code = waiter.wait(60)
    assert code == 130, waiter.stdout + waiter.stderr
    assert "Traceback" not in waiter.stderr + waiter.stdout, waiter.stderr
    assert waiter.stderr.count("another refresh holds") == 1, waiter.stderr
    assert "SIGINT received while waiting for .critpath/lock; nothing was run" in waiter.stderr
    assert _runs(holder.project) == holder.runs
    assert not (holder.project / "quick.runs").exists()
    assert holder.cli.proc.poll() is None, "the holder is unaffected"


def test_a_waiter_says_so_once_and_runs_once_the_holder_is_killed(holder):
    """The holder is SIGKILLed (it never releases the lock itself): the kernel releases it."""
    with Cli(*RUN, "--select", "quick", cwd=holder.project, api_url=holder.url) as waiter:
        waiter.wait_for_output("waiting...")
        assert _runs(holder.project) == holder.runs, "no run of its own while it waits"
        assert not (holder.project / "quick.runs").exists()
        holder.cli.kill()
        code = waiter.wait(120)
    assert code == 0, waiter.stdout + waiter.stderr
    assert waiter.stderr.count(f"critpath: another refresh holds .critpath/lock (pid {holder.cli.proc.pid}); "
                                "waiting...\n") == 1, waiter.stderr
    report = last_report(holder.project)
    assert {n: s["state"] for n, s in report["services"].items()} == {"quick": "completed"}
    assert len(_runs(holder.project) - holder.runs) == 1
    assert (holder.project / ".critpath" / "lock").read_text() == "", "released, with no stale pid"
    assert gone(holder.cli.proc.pid) and gone(waiter.proc.pid)
    assert not [p for p in psutil.process_iter(["cwd"]) if p.info["cwd"] == str(holder.project)]
