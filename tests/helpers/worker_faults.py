"""Service bodies for the worker-side tests (``call="tests.helpers.worker_faults:NAME"``):
a service that starts processes of its own, an exception that cannot be printed, a
secret logged in every form.

They run on workers (threads, worker processes, Dask or Ray workers), so what they tell
the test goes through files the test owns, named in ``params``.
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)


def _write_atomically(path: str, text: str) -> None:
    """``path`` appears with its whole content or not at all: a watcher never reads half of it."""
    tmp = f"{path}.{os.getpid()}.tmp"
    Path(tmp).write_text(text)
    os.replace(tmp, path)


def _sleep_an_hour(_: int = 0) -> None:
    time.sleep(3600)


def spawn_and_hang(pidfile: str, how: str, then: str = "hang") -> None:
    """Starts processes of its own that sleep an hour, each holding whatever this process
    holds (its worker's result pipe too), records ``{"worker": pid, "children": [pids]}``
    in ``pidfile``, then hangs (``then="hang"``) or returns (``then="return"``).

    ``how``: ``"pool"``, a ``multiprocessing.Pool`` of 2 processes (forked) each busy with a
    task; ``"fork"``, 2 ``os.fork()`` children, the first forking a grandchild of its own."""
    import psutil

    if how == "pool":
        pool = multiprocessing.get_context("fork").Pool(2)
        for i in range(2):
            pool.apply_async(_sleep_an_hour, (i,))
    elif how == "fork":
        for i in range(2):
            if os.fork() == 0:  # the child (and, for the first one, a grandchild) sleeps an hour
                try:
                    if i == 0 and os.fork() == 0:
                        pass
                    time.sleep(3600)
                finally:
                    os._exit(0)
    else:
        raise ValueError(how)
    me = psutil.Process()
    want = 3 if how == "fork" else 2
    deadline = time.monotonic() + 30
    while len(children := me.children(recursive=True)) < want and time.monotonic() < deadline:
        time.sleep(0.01)  # the grandchild is forked by a child: wait until it exists
    _write_atomically(pidfile, json.dumps({"worker": os.getpid(), "children": [c.pid for c in children]}))
    if then == "hang":
        time.sleep(3600)


class Unprintable(Exception):
    """An exception whose ``__str__`` raises."""

    def __str__(self) -> str:
        raise RuntimeError("__str__ exploded")


class Unrepresentable(Exception):
    """Neither ``str()`` nor ``repr()`` works."""

    def __str__(self) -> str:
        raise RuntimeError("__str__ exploded")

    def __repr__(self) -> str:
        raise RuntimeError("__repr__ exploded")


def raise_unprintable(kind: str = "str") -> None:
    """Raises an exception that cannot be printed (``kind="str"``: its ``str()`` fails;
    ``"repr"``: its ``repr()`` fails too); the message, if any could be had, is "disk full"."""
    raise (Unprintable if kind == "str" else Unrepresentable)("disk full")


def leak_forms(name: str, env: bool = False, fail: bool = True) -> None:
    """Reads the credential ``name`` (through ``secret()``, or with ``env=True`` straight from
    the environment variable ``name.upper()``, as a service that never heard of ``secret()``
    does) and lets it out in every form a log line or an error takes: as it is, ``%r``,
    ``f"{s!r}"``, ``json.dumps`` and ``ascii()``, a ``KeyError(s)`` logged with its traceback,
    then (``fail=True``) raises ``KeyError(s)``."""
    if env:
        value = os.environ[name.upper()]
    else:
        from orchestrator.flows.credentials import secret

        value = secret(name)
    log.info("raw: %s", value)
    log.info("percent-r: %r", value)
    log.info(f"f-string: {value!r}")
    log.info("in a dict: %s", {"password": value})
    log.info("json: %s", json.dumps({"password": value}))
    log.info("ascii: %a", value)
    logging.getLogger("thirdparty.driver").warning("login failed for %r", value)
    try:
        {}[value]
    except KeyError:
        log.exception("lookup failed")
    if fail:
        raise KeyError(value)


def hold_the_gil(letters: int = 27) -> None:
    """A catastrophic regex: C code that holds the interpreter lock for seconds (~2.5 s at 26 here,
    doubling with each letter), so no other thread of the process runs meanwhile."""
    import re

    re.match(r"(a+)+$", "a" * letters + "b")


def leave_a_thread() -> None:
    """Start a non-daemon thread that never ends, and return."""
    import threading

    threading.Thread(target=time.sleep, args=(3600,), name="left-behind", daemon=False).start()


def wander_off(where: str) -> None:
    """Change the process's working folder, as a careless service might."""
    os.chdir(where)


def chatter(lines: int = 50_000) -> None:
    """Log ``lines`` INFO lines, as a verbose service might."""
    log = logging.getLogger("tests.helpers.worker_faults.chatter")
    for k in range(lines):
        log.info("line %d of %d", k + 1, lines)
