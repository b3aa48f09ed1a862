"""Service bodies for the contract tests, imported by ``call="tests.helpers.services:NAME"``.

They run on workers (threads, forkserver processes, Dask or Ray worker processes),
so everything they share with the test goes through files in a directory the test
owns, passed in ``params``. They import nothing from the orchestrator or Prefect.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)


def chatty(message: str) -> None:
    """Logs ``message`` at INFO with the stdlib, the way a service author would."""
    log.info(message)


def boom(message: str = "boom") -> None:
    raise ValueError(message)


def flaky(counter: str, failures: int) -> int:
    """Fails its first ``failures`` calls; counts calls in the file ``counter``.

    Attempts never overlap (the dispatcher retries only after an attempt ended),
    so a plain read-modify-write is enough.
    """
    path = Path(counter)
    calls = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(calls))
    if calls <= failures:
        raise RuntimeError(f"flaky: call {calls} of {failures} planned failures")
    return calls


def hang(seconds: float, ended: str, release: str | None = None, pidfile: str | None = None) -> None:
    """Blocks up to ``seconds``, or until the file ``release`` exists (if one is named).

    Writes its own end time to ``ended`` when it returns, so a test can tell whether
    a timed-out body was still holding its worker when later services started (a
    body that was killed never writes it). The short poll is what lets a test end a
    straggler it no longer needs, without which a thread could not be stopped.
    ``pidfile``, if named, gets the pid of the process running the body as it starts,
    so a test can tell whether that process was stopped.
    """
    if pidfile is not None:
        _write_atomically(pidfile, str(os.getpid()))
    stop = time.time() + seconds
    while time.time() < stop and not (release is not None and os.path.exists(release)):
        time.sleep(0.05)
    _write_atomically(ended, repr(time.time()))


def _write_atomically(path: str, text: str) -> None:
    """``path`` appears with its whole content or not at all: a reader never sees half a number."""
    tmp = f"{path}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    Path(tmp).write_text(text)
    os.replace(tmp, path)


def pid() -> int:
    return os.getpid()


def accept(**params) -> None:
    """Takes any keyword arguments and does nothing with them."""


def rendezvous(me: str, other: str, seconds: float) -> None:
    """Creates the file ``me``, then waits for the file ``other``: completes only when the
    service that creates ``other`` runs at the same time. Proves two slots were really free
    without measuring any duration; gives up (TimeoutError) after ``seconds``."""
    Path(me).touch()
    stop = time.time() + seconds
    while not os.path.exists(other):
        if time.time() > stop:
            raise TimeoutError(f"{Path(other).name} did not appear within {seconds:g} s: "
                               "its service never ran alongside this one")
        time.sleep(0.02)
