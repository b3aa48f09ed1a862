"""A real Prefect server for the contract tests, and reading a refresh back through its API.

``prefect_server`` (session scope) starts ``prefect server start`` in a subprocess of its own
process group, with a private ``PREFECT_HOME`` (its own SQLite database) and no inherited
``PREFECT_API_URL``, waits for ``/api/health`` and yields the API URL. Tests point a refresh at
it with ``api(url)``; ``readback`` then fetches the flow run, its task runs and their logs.

The server persists task runs from the client's events asynchronously, after ``run()`` has
returned, and its API offers no way to wait for that; ``readback`` therefore re-reads until
every expected task run is present and final (or a deadline passes, and the assertions that
follow report what was missing). That is the one polling loop here, and it only bounds a test.

Prefect 3.8.8's server rejects ``read_task_runs``/``read_logs`` bodies whose ``limit``,
``offset`` or ``sort`` are null, so every read passes all three.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pytest

#: /api/health answers after 10-15 s on a quiet 2-core machine (BASELINES.md), but took
#: 60 s, and once more than 90 s, while other test suites loaded it (load average 30-40)
SERVER_START_TIMEOUT_S = 120
#: how long readback waits for the server to persist what run() sent it
READBACK_TIMEOUT_S = 60
_PAGE = 200  # the server's default maximum for limit


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via an HTTP(S)_PROXY


def _healthy(url: str) -> bool:
    try:
        with _direct.open(f"{url}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _stop(proc: subprocess.Popen) -> None:
    """Ends the server and whatever it started (its own process group), TERM then KILL."""
    if proc.poll() is not None:
        return
    for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _die_with_parent():
    """On Linux, a ``preexec_fn`` that has the server sent SIGTERM when the test process dies
    without running its teardown (say, killed by a CI timeout), instead of outliving it."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork, only called after
    PR_SET_PDEATHSIG = 1
    return lambda: prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _start(home: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    last = ""
    for _ in range(3):  # the port can be taken between choosing it and the server binding it
        port = _free_port()
        url = f"http://127.0.0.1:{port}/api"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                 "--port", str(port)],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: teardown reaches anything it starts
                preexec_fn=_die_with_parent())
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None:
            # alive *and* answering: a server that lost the port race exits instead
            if _healthy(url) and proc.poll() is None:
                return proc, url
            time.sleep(0.25)
        last = log_path.read_text(errors="replace")[-3000:]
        _stop(proc)
        if "already in use" not in last:
            break
    raise RuntimeError(f"prefect server did not answer {SERVER_START_TIMEOUT_S} s after start; "
                       f"its output ({log_path}):\n{last}")


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory) -> Iterable[str]:
    """The API URL (``http://127.0.0.1:PORT/api``) of a fresh ``prefect server start``."""
    home = tmp_path_factory.mktemp("prefect-home")
    proc, url = _start(home, home / "server.log")
    try:
        yield url
    finally:
        _drain_prefect_workers()
        _stop(proc)


def _drain_prefect_workers() -> None:
    """Deliver what Prefect still buffers (e.g. a flow run's last log lines) while the
    server is up, instead of failing to at interpreter exit."""
    if "prefect" not in sys.modules:
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    EventsWorker.drain_all(timeout=10)


def api(url: str | None):
    """Settings that send Prefect to ``url``; ``None`` is Prefect's temporary local server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if url is None:
        return temporary_settings(restore_defaults={PREFECT_API_URL})
    return temporary_settings(updates={PREFECT_API_URL: url})


@dataclass
class Readback:
    """What the Prefect API holds about one refresh."""

    flow_run: object
    task_runs: dict = field(default_factory=dict)  # name -> TaskRun
    logs: dict = field(default_factory=dict)  # name -> [Log], oldest first

    def messages(self, name: str, level: int | None = None) -> list[str]:
        return [g.message for g in self.logs.get(name, []) if level is None or g.level == level]


def readback(url: str, flow_run_id: str, names: Iterable[str], *, expect_logs: dict | None = None,
             timeout: float = READBACK_TIMEOUT_S) -> Readback:
    """The flow run, its task runs by name and their logs, once the server has them all.

    Waits until every name in ``names`` is a task run in a final state and, for each
    ``expect_logs[name]`` (a substring), a log line of that task run contains it.
    """
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterTaskRunId
    from prefect.client.schemas.sorting import LogSort, TaskRunSort

    names = set(names)
    expect_logs = expect_logs or {}
    fr_id = UUID(str(flow_run_id))
    deadline = time.monotonic() + timeout
    with api(url), get_client(sync_client=True) as client:
        while True:
            task_runs = {}
            offset = 0
            while True:
                page = client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[fr_id])),
                    sort=TaskRunSort.NAME_ASC, limit=_PAGE, offset=offset)
                task_runs.update((tr.name, tr) for tr in page)
                if len(page) < _PAGE:
                    break
                offset += _PAGE
            logs = {}
            for name, tr in task_runs.items():
                logs[name] = client.read_logs(
                    log_filter=LogFilter(task_run_id=LogFilterTaskRunId(any_=[tr.id])),
                    sort=LogSort.TIMESTAMP_ASC, limit=_PAGE, offset=0)
            done = (names <= task_runs.keys()
                    and all(tr.state is not None and tr.state.is_final() for tr in task_runs.values())
                    and all(any(text in g.message for g in logs.get(n, [])) for n, text in expect_logs.items()))
            if done or time.monotonic() > deadline:
                return Readback(client.read_flow_run(fr_id), task_runs, logs)
            time.sleep(0.25)
