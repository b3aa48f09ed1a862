"""The runner seam: what crosses to an engine and what comes back.

A runner only executes. It takes a ``Job`` (plain, picklable data: which callable
or synthetic body, with what keyword arguments), runs ``execute(job)`` somewhere,
and reports an ``Outcome`` (or the engine's own exception, e.g. a lost worker)
through the ``done`` callback it was given. Order, limits, retries and timeouts
are the dispatcher's; a runner never queues work on its own initiative.

``execute`` is the only code that runs on a worker. It imports nothing from
Prefect: the worker needs no Prefect API, and Prefect's bookkeeping stays in the
flow's process (see ``orchestrator/recorder.py``). It times the body on the
worker, catches its exception as data (so no engine has to transport user
exceptions), and carries back the log records the body emitted.
"""
from __future__ import annotations

import importlib
import logging
import os
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol


@dataclass(frozen=True)
class Job:
    key: str  # unique per attempt: "name#attempt"
    name: str
    call: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    duration: float | None = None
    kind: str = "sleep"
    package: str | None = None  # top-level package whose INFO logs are carried back


@dataclass(frozen=True)
class Outcome:
    key: str
    ok: bool
    start: float  # Unix seconds, measured on the worker
    end: float
    worker: str
    logs: tuple[tuple[float, int, str, str], ...] = ()  # (created, levelno, logger, message)
    error: str | None = None  # "ValueError: bad row"
    traceback: str | None = None


Done = Callable[["Outcome | BaseException"], None]


class WorkerLost(RuntimeError):
    """The worker running a service died (killed, out of memory, node gone) before
    reporting. Runners translate their engine's own error into this one, so the
    dispatcher can retry on a surviving worker without knowing the engine."""


class RestartedWorkerLost(WorkerLost):
    """The worker died because critpath itself restarted it (to stop a timed-out or
    cancelled service running beside this one). Not the infrastructure's fault and not
    the service's: the dispatcher decides what to do with it (it runs the job again
    without counting an attempt, a few times at most)."""


class RunnerSetupError(ValueError):
    """A runner cannot be made as asked (an option that does not apply to it);
    ``str()`` says what to change."""


class Runner(Protocol):
    name: str
    capacity: int  # how many jobs the engine runs at once

    def __enter__(self) -> "Runner": ...
    def __exit__(self, *exc) -> None: ...
    def submit(self, job: Job, priority: float, done: Done) -> Any: ...
    def cancel(self, handle: Any) -> None: ...


# -- worker side ------------------------------------------------------------

class _Capture(logging.Handler):
    """Collects records per thread, for threads that registered a buffer."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.buffers: dict[int, list] = {}

    def emit(self, record: logging.LogRecord) -> None:
        buf = self.buffers.get(record.thread)
        if buf is not None:
            try:
                msg = record.getMessage()
                if record.exc_info:
                    msg += "\n" + "".join(traceback.format_exception(*record.exc_info))
            except Exception:  # a bad format string in a service must not fail the service
                msg = str(record.msg)
            buf.append((record.created, record.levelno, record.name, msg))


_capture = _Capture()
#: longest first, so that a secret holding another is masked whole; a tuple replaced (never
#: mutated) under the lock, so ``redact`` reads it from any thread without one
_secrets: tuple[str, ...] = ()
_secrets_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Values to mask in whatever leaves this worker (see ``orchestrator.flows.credentials``) and in
    every log record this process creates from now on, whoever logs it and wherever it is
    printed. On the threads runner the worker is the CLI's own process: its console handler
    prints another library's WARNING as it happens, before anything else could mask it."""
    global _secrets
    if not value or len(value) < 3 or value in _secrets:  # masking 1-2 characters would garble everything
        return
    with _secrets_lock:
        if not _secrets:  # the first secret: until now no record paid for redaction
            logging.setLogRecordFactory(_redacting(logging.getLogRecordFactory()))
        _secrets = tuple(sorted({*_secrets, value}, key=len, reverse=True))


def redact(text: str | None) -> str | None:
    if text is None or not _secrets:
        return text
    for value in _secrets:
        text = text.replace(value, "***")
    return text


def _redacting(previous: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    """A record factory that masks the secrets at creation, before any handler or filter sees
    the record (a filter on handlers would miss handlers added later, e.g. by Prefect or Dask).
    It wraps the factory in place, so another library's own factory keeps working."""

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            _redact_record(record)
        except Exception:  # never fail the caller's log call; never let an unchecked line through
            record.msg, record.args = "(a log line that could not be checked for secrets)", None
            record.exc_info = record.exc_text = record.stack_info = None
        return record

    return factory


def _redact_record(record: logging.LogRecord) -> None:
    try:
        text = record.getMessage()
    except Exception:  # a bad format string: logging's error report would print msg and args raw
        text = f"{record.msg} {record.args!r}"
    extra = ""
    if record.exc_info:  # the exception's text (and the traceback's) may hold the secret too
        extra = "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
    if record.stack_info:
        extra += "\n" + record.stack_info
    masked = redact(text + extra)
    if masked != text + extra:  # the record is left alone unless it held a secret
        record.msg, record.args = masked, None
        record.exc_info = record.exc_text = record.stack_info = None


_capture_lock = threading.Lock()
_captured_packages: set[str] = set()


def _capture_package(package: str | None) -> None:
    """Route the service package's INFO+ records (and anyone's WARNING+) to the capture.

    The package logger stops propagating so a service's INFO lines are not printed
    a second time by whatever console handler the worker (or flow) process has: they
    are carried back and shown as the task run's logs instead.
    """
    with _capture_lock:
        root = logging.getLogger()
        if _capture not in root.handlers:
            root.addHandler(_capture)
        if package and package not in _captured_packages:
            lg = logging.getLogger(package)
            if lg.level == logging.NOTSET:
                lg.setLevel(logging.INFO)
            lg.addHandler(_capture)
            lg.propagate = False
            _captured_packages.add(package)


def resolve(call: str) -> Callable:
    """``"pkg.mod:func"`` (or ``pkg.mod:Class.method``) to the callable."""
    module, _, attr = call.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _synthetic(duration: float, kind: str) -> None:
    if kind == "cpu":  # burn CPU for `duration` seconds of wall time
        stop = time.perf_counter() + duration
        x = 0
        while time.perf_counter() < stop:
            for _ in range(1000):
                x += 1
    elif duration > 0:
        time.sleep(duration)


def worker_name() -> str:
    t = threading.current_thread().name
    return f"{socket.gethostname()}:{os.getpid()}" + ("" if t == "MainThread" else f"/{t}")


def execute(job: Job) -> Outcome:
    _capture_package(job.package)
    me = threading.get_ident()
    logs: list = []
    _capture.buffers[me] = logs
    start = time.time()
    try:
        if job.call is not None:
            resolve(job.call)(**dict(job.params))
        else:
            _synthetic(job.duration or 0.0, job.kind)
        ok, err, tb = True, None, None
    except BaseException as exc:  # a service's failure is data, not a crash
        ok = False
        err = f"{type(exc).__name__}: {exc}"
        tb = "".join(traceback.format_exception(exc))
    finally:
        end = time.time()
        _capture.buffers.pop(me, None)
    if _secrets:
        logs = [(c, lv, name, redact(msg)) for c, lv, name, msg in logs]
        err, tb = redact(err), redact(tb)
    return Outcome(job.key, ok, start, end, worker_name(), tuple(logs), err, tb)


def warm(_: int = 0) -> int:
    """A no-op used to start an engine's workers before the clock starts."""
    return os.getpid()


def probe(address: str, default_port: int, timeout: float = 30.0) -> None:
    """Fail fast, with the address in the message, when nothing listens at ``address``.

    Dask retries a refused connection until its timeout, and ``ray.init`` can wait
    far longer; a plain TCP connect tells within ``timeout`` seconds.
    """
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    host, port = parts.hostname, parts.port or default_port
    if not host:
        raise ValueError(f"--address {address!r}: expected host:port, e.g. 127.0.0.1:{default_port}")
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise ConnectionError(f"nothing answers at {host}:{port} ({exc.strerror or exc})") from None
