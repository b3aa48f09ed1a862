"""Reliability, issue 10 §2: nothing critpath starts outlives it, however it ends.

* ``critpath run`` with no PREFECT_API_URL starts its own temporary Prefect server: after
  ``kill -9`` of critpath, after a second SIGTERM ("exit at once"), and after a service that
  calls ``os._exit`` on the threads runner (which takes critpath down with it), that server
  and every process of the engine are gone. On Ray that includes ``ray::DashboardAgent`` and
  ``ray::RuntimeEnvAgent``, which on their own wait 60 s for Ray's (dead) GCS first.
* ``critpath server`` stopped with SIGTERM or Ctrl-C stops its ``prefect server start``
  first (nothing listens on the port afterwards); killed with SIGKILL, the server follows.

The processes are read from the process table (psutil) while critpath runs; afterwards each
must be gone. Waits are bounded only so that a broken promise fails instead of hanging, and
each bound is below what the leak it guards against lasted.
"""
from __future__ import annotations

import signal
import socket
from pathlib import Path

import psutil
import pytest

from orchestrator.flows.server import free_port, healthy
from tests.helpers.engines import engines
from tests.helpers.graphs import FAULTS
from tests.helpers.processes import Cli, read_pid, wait_until
from tests.helpers.projects import graph_file

#: bounds the wait for what critpath started to be gone once it is (Ray's agents alone took 60 s)
GONE_BOUND_S = 30
#: bounds a Prefect server's start-up (10-15 s here, far more on a loaded machine)
SERVER_START_S = 120


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return ""


def _snapshot(pid: int) -> dict[psutil.Process, str]:
    """Every descendant of ``pid`` now, with its command line (read now: a dead one has none)."""
    return {p: _cmdline(p) for p in psutil.Process(pid).children(recursive=True)}


def _assert_all_gone(started: dict[psutil.Process, str]) -> None:
    def left():
        return [f"{p.pid}: {cmd[:100]}" for p, cmd in started.items() if _alive(p)]

    try:
        wait_until(lambda: not left(), GONE_BOUND_S, "every process critpath started to be gone")
    except AssertionError:
        raise AssertionError(f"still running {GONE_BOUND_S} s after critpath ended: {left()}") from None


def _server_of(started: dict[psutil.Process, str]) -> list[psutil.Process]:
    return [p for p, cmd in started.items() if "orchestrator.flows.tempserver" in cmd]


def _project(project: Path) -> Path:
    """first -> long (records its pid, sleeps 60 s) -> after_long."""
    pidfile = project / "long.pid"
    graph_file(project, [{"name": "first", "duration": 0.05},
                         {"name": "long", "after": ["first"], "call": f"{FAULTS}:die_once",
                          "params": {"pidfile": str(pidfile), "seconds": 60}},
                         {"name": "after_long", "after": ["long"], "duration": 0.05}])
    return pidfile


@pytest.mark.parametrize("runner", engines("threads", "processes", "dask", "ray"))
def test_kill_9_of_critpath_run_leaves_nothing_running(runner, tmp_path):
    pidfile = _project(tmp_path)
    with Cli("run", "--graph", "g.json", "--runner", runner, "--workers", "2", cwd=tmp_path, api_url=None) as cli:
        read_pid(pidfile)
        started = _snapshot(cli.proc.pid)
        assert _server_of(started), started  # critpath's own temporary server is among them
        cli.proc.kill()
        cli.proc.wait(30)
    _assert_all_gone(started)


def test_a_second_sigterm_exits_at_once_and_leaves_nothing_running(tmp_path):
    """The second SIGTERM ends critpath without its clean-up (``os._exit``)."""
    pidfile = _project(tmp_path)
    with Cli("run", "--graph", "g.json", "--runner", "processes", cwd=tmp_path, api_url=None) as cli:
        read_pid(pidfile)
        started = _snapshot(cli.proc.pid)
        cli.proc.send_signal(signal.SIGTERM)
        cli.wait_for_output("critpath: SIGTERM received", 30)
        cli.proc.send_signal(signal.SIGTERM)
        code = cli.wait(60)
    assert code == 143, f"exit status {code}\n{cli.stdout}{cli.stderr}"
    assert _server_of(started)
    _assert_all_gone(started)


def test_a_service_that_ends_the_process_on_threads_leaves_no_server(tmp_path):
    """On threads a service's ``os._exit`` is critpath's: the process ends with its status,
    at once, without any clean-up. Its temporary server must not stay behind."""
    gate, release = tmp_path / "gate.pid", tmp_path / "release"
    graph_file(tmp_path, [{"name": "gate", "call": f"{FAULTS}:hang",
                           "params": {"pidfile": str(gate), "seconds": 120, "release": str(release)}},
                          {"name": "crash", "after": ["gate"], "call": "os:_exit", "params": {"status": 7}}])
    with Cli("run", "--graph", "g.json", "--runner", "threads", cwd=tmp_path, api_url=None) as cli:
        read_pid(gate)
        started = _snapshot(cli.proc.pid)
        release.touch()
        code = cli.wait(60)
    assert code == 7, f"exit status {code}\n{cli.stdout}{cli.stderr}"
    assert _server_of(started)
    _assert_all_gone(started)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("sig,to_group,expected", [
    (signal.SIGTERM, False, 143),  # kill PID, as a service manager stops its main process
    (signal.SIGINT, True, 0),  # Ctrl-C in the terminal: the foreground group
    (signal.SIGKILL, False, -signal.SIGKILL),  # no clean-up at all: the server follows by itself
], ids=["sigterm", "ctrl-c", "kill-9"])
def test_critpath_server_stopped_leaves_nothing_running(sig, to_group, expected, tmp_path):
    port = free_port()
    with Cli("server", "--port", str(port), cwd=tmp_path, api_url=None) as cli:
        wait_until(lambda: healthy(f"http://127.0.0.1:{port}/api") or cli.proc.poll() is not None, SERVER_START_S,
                   f"critpath server to answer on port {port}")
        assert cli.proc.poll() is None, cli.stdout + cli.stderr
        started = _snapshot(cli.proc.pid)
        assert any("prefect server start" in cmd for cmd in started.values()), started
        if to_group:
            cli.signal_group(sig)
        else:
            cli.proc.send_signal(sig)
        code = cli.wait(60)
    assert code == expected, f"exit status {code}\n{cli.stdout}{cli.stderr}"
    assert "Traceback" not in cli.stderr, cli.stderr
    _assert_all_gone(started)
    assert not _listening(port)
