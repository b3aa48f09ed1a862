"""Starting and stopping a real ``prefect server start`` on 127.0.0.1, for the test
suite's session server and the bench's server (``critpath server`` runs it in the
foreground instead, see ``serving.server_command``).

The server runs in a process group of its own, so that stopping it reaches uvicorn
and the services it starts; on Linux it also gets SIGTERM if the process that started
it dies without cleaning up (a CI timeout's SIGKILL), instead of outliving it.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ..support.logs import quiet

#: /api/health answers after 10-15 s on a quiet 2-core machine (BASELINES.md), but took
#: 60 s, and once more than 90 s, while other work loaded it (load average 30-40)
START_TIMEOUT_S = 120

_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via an HTTP(S)_PROXY


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    """``url`` is the API root, ``http://127.0.0.1:PORT/api``."""
    try:
        with _direct.open(f"{url}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def stop(proc: subprocess.Popen) -> None:
    """Ends the server and whatever it started (its own process group), TERM then KILL."""
    for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        if proc.poll() is not None:
            return
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
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork, only called after
    PR_SET_PDEATHSIG = 1
    return lambda: prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def start(home: Path, env: dict | None = None, timeout: float = START_TIMEOUT_S) -> tuple[subprocess.Popen, str]:
    """A fresh server with its database under ``home`` (its log in ``home/server.log``);
    returns the process and the API URL once ``/api/health`` answers.

    ``env`` (default: this process's) is the server's environment, without any
    ``PREFECT_API_URL``; ``PREFECT_HOME`` is set to ``home``."""
    env = {k: v for k, v in (os.environ if env is None else env).items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(home))
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    log_path = home / "server.log"
    last = ""
    for _ in range(3):  # the port can be taken between choosing it and the server binding it
        port = free_port()
        url = f"http://127.0.0.1:{port}/api"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=_die_with_parent())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            # alive *and* answering: a server that lost the port race exits instead
            if healthy(url) and proc.poll() is None:
                return proc, url
            time.sleep(0.25)  # waiting for a process we started to answer; bounded
        last = log_path.read_text(errors="replace")[-3000:]
        stop(proc)
        if "already in use" not in last:
            break
    raise RuntimeError(f"prefect server did not answer {timeout:g} s after start; its output ({log_path}):\n{last}")


def drain() -> None:
    """Deliver what Prefect still buffers (a flow run's last log lines and events) now,
    while the server is up; left to interpreter exit, it races the server's shutdown."""
    if "prefect" not in sys.modules:
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    # while draining, each worker logs "Still processing items: N items remaining..." as a
    # WARNING every 4 s: progress of the wait below, not a problem for the user to act on
    with quiet("EventsWorker", "APILogWorker"):
        APILogWorker.drain_all(timeout=10)
        EventsWorker.drain_all(timeout=10)
