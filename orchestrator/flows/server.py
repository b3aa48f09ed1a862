"""The Prefect servers critpath starts, and how they end.

``start``/``stop``: a real ``prefect server start`` on 127.0.0.1, for the test suite's
session server, the bench's server and ``critpath server``. The server runs in a session
(and so a process group) of its own, so that stopping it reaches uvicorn and the services
it starts, and a signal to critpath's group does not; on Linux it also gets SIGTERM if
the thread that started it ends without cleaning up (a CI timeout's SIGKILL), instead of
outliving it.

``temporary_api``: critpath's own temporary server, used when no ``PREFECT_API_URL`` is
set, instead of the one Prefect would start by itself (``SubprocessASGIServer``: a uvicorn
child in critpath's process group, which GNU ``timeout``'s SIGTERM killed mid-run, and which
outlived a ``kill -9`` of critpath). The same app in the same environment, but in a session
of its own and tied to critpath's life (see ``tempserver``); stopped by ``stop_temporary``
or at interpreter exit.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
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



class _Stop(Exception):
    def __init__(self, signum: int):
        self.signum = signum


def serve_foreground(cmd: list[str], env: dict) -> int:
    """Runs ``cmd`` (``prefect server start``) until it exits, with its output on this
    process's; returns its exit status. The server runs in a session of its own, with a
    parent-death SIGTERM, so that nothing but this process decides when it stops:
    SIGINT (Ctrl-C) or SIGTERM here stops its whole session (``stop``), and the status
    is then 0 for SIGINT and 143 for SIGTERM. A second signal while it stops: SIGKILL.
    Must be called in the main thread (signal handlers)."""
    def handler(signum, frame):
        raise _Stop(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    proc = None
    try:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=_die_with_parent())
        return proc.wait()
    except _Stop as first:
        try:
            if proc is not None:
                stop(proc)
        except _Stop:
            if proc is not None and proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(10)
        return 0 if first.signum == signal.SIGINT else 128 + first.signum
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)

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



def discard_undelivered() -> int:
    """Drops the events and log lines Prefect still holds for delivery, and stops the
    item being sent; returns how many were dropped. For an API that no longer answers,
    where each would only fail in turn (an event after ten connection attempts), at
    interpreter exit if not before.

    Prefect has no public call for this; its queue services (3.8.8) keep their instances
    in ``_instances``, their items in ``_queue`` and the task sending them in ``_task``,
    on ``_loop``. Anything else is left alone."""
    if "prefect" not in sys.modules:
        return 0
    import queue

    from prefect._internal.concurrency.services import _QueueServiceBase
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    dropped = 0
    for service in list(getattr(_QueueServiceBase, "_instances", {}).values()):
        pending = getattr(service, "_queue", None)
        if not isinstance(service, (EventsWorker, APILogWorker)) or not isinstance(pending, queue.Queue):
            continue
        while True:
            try:
                item = pending.get_nowait()
            except queue.Empty:
                break
            pending.task_done()
            if item is None:  # the service's own stop marker: keep it, and stop there
                pending.put_nowait(None)
                break
            dropped += 1
        task, loop = getattr(service, "_task", None), getattr(service, "_loop", None)
        if task is not None and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(task.cancel)  # the service ends; a later event starts a new one
    return dropped

# -- critpath's temporary server -------------------------------------------------------------

#: what Prefect adds to the environment of its own temporary server
#: (prefect.server.api.server.SubprocessASGIServer._run_uvicorn_command)
EPHEMERAL_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
#: the folder holding the ``orchestrator`` package: the server process imports ``tempserver`` from it
_ROOT = str(Path(__file__).resolve().parents[2])


class TemporaryServer:
    """One temporary server process (``tempserver``), launched at once; ``wait_ready`` waits
    for it to answer. ``env`` is its whole environment."""

    def __init__(self, env: dict):
        self.env = env
        listener = socket.socket()
        try:
            listener.bind(("127.0.0.1", 0))
            listener.listen(2048)  # uvicorn's backlog
            self.url = f"http://127.0.0.1:{listener.getsockname()[1]}/api"
            path = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH")) if p)
            lifeline, self._lifeline = os.pipe()  # only this process holds the write end
            try:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "orchestrator.flows.tempserver", str(listener.fileno()), str(os.getpid())],
                    env={**env, "PYTHONPATH": path}, stdin=lifeline, pass_fds=(listener.fileno(),),
                    start_new_session=True)
            except BaseException:
                os.close(self._lifeline)
                raise
            finally:
                os.close(lifeline)
        finally:
            listener.close()  # the server has its own copy; none may stay here once it is gone

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> str:
        """The API URL once ``/api/health`` answers; RuntimeError if the server exits or
        does not answer within ``timeout`` s (it is then stopped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive():
            if healthy(self.url):  # the socket listens from the start: this waits for the app
                return self.url
            time.sleep(0.1)  # waiting for a process we started to answer; bounded
        code = self.proc.poll()
        self.stop()
        raise RuntimeError(f"critpath's temporary Prefect server did not answer {timeout:g} s after start"
                           + (f" (it exited with status {code}; its output is above)" if code is not None else ""))

    def stop(self, grace: float = 15.0) -> None:
        """Lets go of the server (it shuts down gracefully), then ends its session with
        SIGKILL if it is still there after ``grace`` s."""
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)


_temporary: TemporaryServer | None = None
_temporary_lock = threading.Lock()


def _server_env() -> dict:
    """The environment Prefect would give its temporary server: this process's, what
    the current Prefect settings set, and ``EPHEMERAL_ENV``."""
    from prefect.settings import get_current_settings

    return {**os.environ, **EPHEMERAL_ENV, **get_current_settings().to_environment_variables(exclude_unset=True)}


def _prefect_part(env: dict) -> dict:
    return {k: v for k, v in env.items() if k.startswith("PREFECT")}


def temporary_api() -> TemporaryServer:
    """critpath's temporary server for the current Prefect settings, launched if there is
    none yet (or the one there is has ended, or has other Prefect settings); the caller
    waits for it with ``wait_ready``. One per process, reused by later runs, stopped at exit."""
    global _temporary
    env = _server_env()
    with _temporary_lock:
        if _temporary is not None and (not _temporary.alive()
                                       or _prefect_part(_temporary.env) != _prefect_part(env)):
            _temporary.stop()
            _temporary = None
        if _temporary is None:
            import atexit

            _temporary = TemporaryServer(env)
            atexit.unregister(stop_temporary)  # registered once
            atexit.register(stop_temporary)
        return _temporary


def stop_temporary() -> None:
    """Stops critpath's temporary server, if one runs (after ``drain``: nothing is lost)."""
    global _temporary
    with _temporary_lock:
        server, _temporary = _temporary, None
    if server is not None:
        server.stop()
