"""Service bodies for the reliability tests (``call="tests.helpers.faults:NAME"``).

They run on workers (threads, worker processes, Dask or Ray workers), so what they
tell the test goes through files the test owns, named in ``params``. A body that
is about to be killed first records its own pid, so the test kills exactly the
process running it; it never guesses which worker that is.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)


def _write_atomically(path: str, text: str) -> None:
    """``path`` appears with its whole content or not at all: a watcher never reads half a pid."""
    tmp = f"{path}.{os.getpid()}.tmp"
    Path(tmp).write_text(text)
    os.replace(tmp, path)


def die_once(pidfile: str, seconds: float) -> str:
    """First call: records this process's pid in ``pidfile`` and sleeps ``seconds``
    (the test kills it meanwhile). Any later call (the retry) returns at once."""
    if os.path.exists(pidfile):
        return "retried"
    _write_atomically(pidfile, str(os.getpid()))
    time.sleep(seconds)
    return "slept through"


def hang(pidfile: str, seconds: float = 3600.0, release: str | None = None, ended: str | None = None) -> None:
    """Does not return in a test's lifetime. Records its pid first, so the test can tell
    whether the process that ran it still exists after the timeout.

    A thread cannot be killed, so on the threads runner the test passes ``release``: the
    body then returns once that file exists, and writes ``ended`` as it does.
    """
    _write_atomically(pidfile, str(os.getpid()))
    if release is None:
        time.sleep(seconds)
    else:
        stop = time.monotonic() + seconds
        while time.monotonic() < stop and not os.path.exists(release):
            time.sleep(0.05)
    if ended is not None:
        Path(ended).touch()


def mark(path: str, seconds: float) -> None:
    """Appends one line (this pid) to ``path``, then sleeps: the line count is how many
    times the service started, whatever happened to the process afterwards."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    finally:
        os.close(fd)
    time.sleep(seconds)


def leak(name: str) -> None:
    """Reads the credential ``name`` and tries every ordinary way to let it out: an INFO
    line of its own logger, a WARNING of another library's logger, an exception message."""
    from orchestrator.flows.credentials import secret

    value = secret(name)
    log.info("connecting with password %s", value)
    logging.getLogger("thirdparty.driver").warning("login as admin:%s@db", value)
    raise PermissionError(f"login refused for password {value!r}")
