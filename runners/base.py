"""The runner seam: what crosses to an engine and what comes back.

A runner only executes. It takes a ``Job`` (plain, picklable data: which callable
or synthetic body, with what keyword arguments), runs ``execute(job)`` somewhere,
and reports an ``Outcome`` (or the engine's own exception, e.g. a lost worker)
through the ``done`` callback it was given. Order, limits, retries and timeouts
are the dispatcher's; a runner never queues work on its own initiative (a runner with slots
keeps one job in line on a busy slot when the dispatcher asks: ``QueuesBehind``).

``execute`` is the only code that runs on a worker. It imports nothing from
Prefect: the worker needs no Prefect API, and Prefect's bookkeeping stays in the
flow's process (see ``orchestrator/recorder.py``). It times the body on the
worker, catches its exception as data (so no engine has to transport user
exceptions), and carries back the log records the body emitted. The exception is
described defensively (``describe_exception``: an exception whose ``__str__`` raises
still fails its service with its type and traceback), and the outcome holds plain
strings and numbers only, so it always pickles.

Secrets: every form of a registered value (``secret_forms``) is masked in what leaves
the worker and in every log record its process creates. A job names the environment
variables holding the run's secrets (``Job.secrets``), registered before the body runs;
an outcome names those its worker knows (``Outcome.secret_names``), for the dispatcher
to pass on to the jobs that follow.

Shipped code: on a cluster, the project's service code travels with the refresh
(``Code``, computed by the orchestrator: which files, their content hash). A service
whose module, or a module it imports, is missing on its worker cannot succeed on a
retry there: its outcome is ``permanent`` and names the module and the worker, and the
dispatcher fails the service at once instead of spending its retries.
"""
from __future__ import annotations

import importlib
import itertools
import json
import logging
import os
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol

from .cpu_share import ACCOUNTANT
from .lock_probe import PROBE
from .thread_waits import THREAD_WAITS, effective


@dataclass(frozen=True)
class Job:
    key: str  # unique per attempt: "name#attempt"
    name: str
    call: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    duration: float | None = None
    kind: str = "sleep"
    package: str | None = None  # top-level package whose INFO logs are carried back
    #: environment variables holding secrets this run uses (declared in the config, or read
    #: through ``secret()`` on some worker): ``execute`` masks their values before the body runs
    secrets: tuple[str, ...] = ()


@dataclass(frozen=True)
class Code:
    """The service code a cluster runner ships with a refresh: plain data, made by the
    orchestrator (``orchestrator.execution.shipping``), read by the Dask and Ray runners.

    ``folder`` holds one entry per top-level package or module in ``modules`` (the
    project's service code and critpath's own ``runners``), ``archive`` the same files as a
    zip; both are named by ``version``, the content hash of the files, so an unchanged
    project is never sent twice and two versions never share a folder. ``imports`` are the
    modules from elsewhere (site-packages) that code imports: each worker is asked for them
    before anything runs. ``requirements`` (pip specifiers) are installed on the workers
    first. With ``ship`` false nothing is sent: the workers are checked for ``modules`` and
    ``imports`` instead (their image has the code)."""

    version: str = ""
    modules: tuple[str, ...] = ()
    folder: str | None = None
    archive: str | None = None
    #: (module, a file of the shipped code that imports it): third-party modules the workers need
    imports: tuple[tuple[str, str], ...] = ()
    requirements: tuple[str, ...] = ()
    ship: bool = True
    size: int = 0  # bytes, uncompressed
    #: knobs the services read that every worker must see alike (CRITPATH_WAREHOUSE: one warehouse
    #: for all), each with its value here (None: not set here)
    shared_env: tuple[tuple[str, str | None], ...] = ()


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
    #: every environment variable whose value this worker masks (``secret()`` recorded it):
    #: the dispatcher passes them on to later jobs, so other workers mask them too
    secret_names: tuple[str, ...] = ()
    #: CPU seconds while the body ran: this worker process's (exact where the service had the
    #: process to itself: processes, Ray), and the body's own thread's (on threads and Dask,
    #: where services share a process; it misses threads the service's libraries start)
    process_cpu_s: float | None = None
    thread_cpu_s: float | None = None
    #: seconds the body's thread was ready to run but waited for a CPU (Linux schedstat): how
    #: much other work on the machine stretched it; in a process of its own, the wait of all the
    #: process's threads, once per thread ready at a time (``thread_waits``); None where the
    #: kernel does not say
    cpu_wait_s: float | None = None
    #: the failure cannot go away on a retry (the service's module, or one it imports, is missing
    #: on this worker): the dispatcher fails the service at once
    permanent: bool = False
    #: the body's thread's CPU plus its share of the CPU its process's other threads used while it
    #: ran (``runners.cpu_share``): where services share a process, the measure that counts the
    #: threads its libraries start; None where the platform has no per-thread CPU clocks
    whole_cpu_s: float | None = None
    #: of ``thread_cpu_s``, the seconds the body's thread ran native code without its process's
    #: interpreter lock (DuckDB, Arrow), as ``runners.lock_probe`` samples it; None where unknown
    native_cpu_s: float | None = None


Done = Callable[["Outcome | BaseException"], None]


def job_fields(job: "Job") -> dict:
    """``job`` as plain data (a dict of its fields): what goes to a worker that unpickles it
    before ``runners`` is importable there."""
    import dataclasses

    return {f.name: getattr(job, f.name) for f in dataclasses.fields(job)}


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
    #: the CPUs of a cluster this runner did not start (an ``--address``), as the cluster reports
    #: them; None: the services run on this machine, whose CPUs the planner reads itself
    cores: float | None

    def __enter__(self) -> "Runner": ...
    def __exit__(self, *exc) -> None: ...
    def submit(self, job: Job, priority: float, done: Done) -> Any: ...
    def cancel(self, handle: Any) -> None: ...


class QueuesBehind(Protocol):
    """What a runner with long-lived slots (Dask, Ray) adds for the dispatcher's lookahead. The
    dispatcher, not the runner, chooses the job; the runner only keeps it in line on that slot."""

    def submit_behind(self, job: Job, priority: float, done: Done, behind: Any) -> Any:
        """Queue ``job`` on the slot running ``behind`` (a handle of ``submit``), to start there
        the moment that one ends, whatever its outcome; one job at most per slot. Its handle,
        or None when it cannot be (``behind`` ended, its slot is gone or has one queued)."""

    def recall(self, handle: Any) -> bool:
        """Take back a job queued by ``submit_behind``: True if it never starts (its ``done`` is
        then never called), False if it started or cannot be reached (it reports as usual)."""


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
                msg = _text(record.msg, str) or _text(record.msg, repr) or "(a log line that could not be formatted)"
            buf.append((record.created, record.levelno, record.name, msg))


_capture = _Capture()
#: every form of every secret (see ``secret_forms``), longest first, so that a secret holding
#: another is masked whole; a tuple replaced (never mutated) under the lock, so ``redact``
#: reads it from any thread without one
_secrets: tuple[str, ...] = ()
_secret_values: frozenset[str] = frozenset()  # the raw values registered
#: the environment variables those values come from, for the dispatcher (``Outcome.secret_names``)
_secret_names: tuple[str, ...] = ()
_secrets_lock = threading.Lock()


def secret_forms(value: str) -> set[str]:
    """The forms in which ``value`` can reach a log line or an error: as it is, as ``repr()``
    and ``ascii()`` write it inside either kind of quotes (``%r``, ``{s!r}``, ``KeyError(s)``,
    a dict or list printed), and as JSON writes it inside a string (``json.dumps``), each
    without the quotes. Forms shorter than 3 characters are left out (see ``register_secret``)."""
    forms = {value}
    for quoted in (repr, ascii):
        single = quoted(value + '"')[1:-2]  # holding both quotes: written in '...', with \' escaped
        forms.add(single)
        forms.add(single.replace("\\'", "'").replace('"', '\\"'))  # the same inside "..."
    forms.add(json.dumps(value)[1:-1])
    forms.add(json.dumps(value, ensure_ascii=False)[1:-1])
    return {f for f in forms if len(f) >= 3}


def register_secret(value: str, name: str | None = None) -> None:
    """Values to mask in whatever leaves this worker (see ``orchestrator.flows.credentials``) and in
    every log record this process creates from now on, whoever logs it and wherever it is
    printed. On the threads runner the worker is the CLI's own process: its console handler
    prints another library's WARNING as it happens, before anything else could mask it.

    Every form of the value is masked (``secret_forms``). The environment variable it comes
    from (``name``, and any variable holding this value) is recorded, and each outcome of this
    worker names them, so that the dispatcher has every other worker mask it from its next job
    on (``Job.secrets``), even a worker whose services read the variable without ``secret()``."""
    global _secrets, _secret_values, _secret_names
    if not value or len(value) < 3:  # masking 1-2 characters would garble everything
        return
    if value in _secret_values and (name is None or name in _secret_names):
        return
    names = {k for k, v in os.environ.items() if v == value}  # where secret() found it, if anywhere
    if name and os.environ.get(name) == value:
        names.add(name)
    with _secrets_lock:
        if not _secrets:  # the first secret: until now no record paid for redaction
            logging.setLogRecordFactory(_redacting(logging.getLogRecordFactory()))
        if value not in _secret_values:
            _secrets = tuple(sorted({*_secrets, *secret_forms(value)}, key=len, reverse=True))
            _secret_values = _secret_values | {value}
        _secret_names = tuple(sorted({*_secret_names, *names}))


def register_secrets_named(names: tuple[str, ...] | list[str]) -> None:
    """Mask the values of the environment variables ``names`` (upper-cased first, as
    ``secret()`` reads them); a name that is not set masks nothing."""
    for name in names:
        for var in dict.fromkeys((name.upper(), name)):
            value = os.environ.get(var)
            if value:
                register_secret(value, var)
                break


def secret_names() -> tuple[str, ...]:
    """The environment variables whose values this process masks."""
    return _secret_names


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
    elif kind == "work":  # a fixed amount of work: `duration` seconds of this thread's CPU time,
        # so that sharing a core (or the GIL) with others stretches its wall time, as real work does
        stop = time.thread_time() + duration
        x = 0
        while time.thread_time() < stop:
            for _ in range(1000):
                x += 1
    elif duration > 0:
        time.sleep(duration)


def worker_name() -> str:
    t = threading.current_thread().name
    return f"{socket.gethostname()}:{os.getpid()}" + ("" if t == "MainThread" else f"/{t}")


def _text(obj: Any, how: Callable[[Any], Any]) -> str | None:
    """``how(obj)`` as a plain ``str``, or None if it raises or gives no string."""
    try:
        text = how(obj)
        return str.__str__(text) if isinstance(text, str) else None  # a plain str, even from a subclass
    except BaseException:  # whatever a user's __str__ or __repr__ raises
        return None


def describe_exception(exc: BaseException) -> tuple[str, str]:
    """``("ValueError: bad row", traceback text)`` for any exception, however broken its
    ``__str__``, ``__repr__`` or ``args``: its type name, whatever of its message can be had
    (``str()``, else ``repr()``, else its ``args``, else ``<unprintable ...>``), and its
    traceback (``traceback.format_exception`` calls ``str()`` too; failing that, the frames
    alone). Never raises."""
    kind = _text(type(exc), lambda t: t.__name__) or "<an exception of unknown type>"
    try:
        message = str.__str__(str(exc))
    except BaseException as broke:  # its __str__ raised: say so, and what else can be had
        why = _text(type(broke), lambda t: t.__name__) or "an exception"
        message = (_text(exc, repr)
                   or _text(exc, lambda e: ", ".join(_text(a, repr) or f"<unprintable {type(a).__name__}>"
                                                     for a in tuple(e.args)))
                   or f"<unprintable {kind} object>") + f" (its str() raised {why})"
    error = f"{kind}: {message}"
    try:
        tb = "".join(traceback.format_exception(exc))
    except BaseException:
        try:
            tb = "Traceback (most recent call last):\n" + "".join(traceback.format_tb(exc.__traceback__)) \
                 + error + "\n"
        except BaseException:
            tb = error + "\n"
    return error, str.__str__(tb)


def _plain_logs(logs: list) -> tuple[tuple[float, int, str, str], ...]:
    """The captured records as plain floats, ints and strs: an outcome always pickles."""
    plain = []
    for created, level, name, msg in logs:
        try:
            plain.append((float(created), int(level), _text(name, str) or "?",
                          _text(msg, str) or "(a log line that could not be formatted)"))
        except BaseException:  # a record that a custom record factory made odd
            plain.append((time.time(), logging.WARNING, "critpath", "(a log line that could not be formatted)"))
    return tuple(plain)


def execute(job: Job, shared: bool = True) -> Outcome:
    """Run ``job`` here; its ``Outcome``. ``shared``: other services may run in this process at
    the same time (threads, a Dask worker), so the CPU of the threads its libraries start is
    shared out (``cpu_share``) and its time off the interpreter lock sampled (``lock_probe``);
    where the process is the service's alone (processes, a Ray slot) its process CPU says it
    all and neither runs: the probe's sampler would only take the lock from the service."""
    if job.secrets:  # before the body: its first log line may hold one
        register_secrets_named(job.secrets)
    _capture_package(job.package)
    me = threading.get_ident()
    logs: list = []
    _capture.buffers[me] = logs
    start, cpu0, thread0, wait0 = time.time(), time.process_time(), time.thread_time(), _run_delay()
    accountant, sampler = (ACCOUNTANT, PROBE) if shared else (None, None)
    # a process of its own: every thread's wait for a CPU is the service's (``thread_waits``)
    waits = None if shared else THREAD_WAITS
    if waits is not None:
        waits.start()
    if accountant is not None:
        accountant.start()
    if sampler is not None:
        sampler.start()
    importing, permanent = False, False
    try:
        if job.call is not None:
            importing = True
            body = resolve(job.call)
            importing = False
            body(**dict(job.params))
        else:
            _synthetic(job.duration or 0.0, job.kind)
        ok, err, tb = True, None, None
    except BaseException as exc:  # a service's failure is data, not a crash
        ok = False
        err, tb = describe_exception(exc)
        if (importing and isinstance(exc, ImportError)) or isinstance(exc, ModuleNotFoundError):
            permanent = True  # the same worker, the same environment: a retry cannot help
            err = missing_module(exc, job.call, err)
    finally:
        end, cpu1, thread1, wait1 = time.time(), time.process_time(), time.thread_time(), _run_delay()
        extra = None if accountant is None else accountant.stop()
        native = None if sampler is None else sampler.stop()
        threads_waited = None if waits is None else waits.stop()
        _capture.buffers.pop(me, None)
    captured = _plain_logs(logs)
    if _secrets:
        captured = tuple((c, lv, name, redact(msg)) for c, lv, name, msg in captured)
        err, tb = redact(err), redact(tb)
    waited = None if wait0 is None or wait1 is None else wait1 - wait0
    if threads_waited is not None:
        waited = max(waited or 0.0, effective(threads_waited, cpu1 - cpu0, end - start))
    return Outcome(job.key, ok, start, end, worker_name(), captured, err, tb, _secret_names,
                   cpu1 - cpu0, thread1 - thread0, waited,
                   permanent, None if extra is None else thread1 - thread0 + extra,
                   None if native is None else min(native, thread1 - thread0))


def missing_module(exc: BaseException, call: str | None, error: str) -> str:
    """``error`` (an import failure) said as what it is: which module, needed by what, is
    missing on which worker, and what to do; the service is failed without a retry."""
    name = getattr(exc, "name", None)
    module = (call or "").partition(":")[0]
    what = f"module {name!r}" if name else "a module"
    by = f" (needed by {module})" if module and name != module else ""
    return (f"{error} [{what}{by} cannot be imported on worker {worker_name()}: a retry cannot help, so "
            "the service failed at once; install it on the workers, add it to requirements in critpath.toml, "
            "or ship it with the project's code]")


def _run_delay() -> float | None:
    """This thread's time spent runnable but not running, in seconds (``/proc/thread-self/schedstat``,
    second field, nanoseconds); None where there is no such file."""
    try:
        with open("/proc/thread-self/schedstat", "rb") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


_TAG_RUN, _TAGS = os.urandom(6).hex(), itertools.count(1)


def new_tag() -> str:
    """A name for one call to a slot, unique across refreshes and processes (job keys repeat):
    what a runner's ``recall`` names to the slot's actor."""
    return f"{_TAG_RUN}-{next(_TAGS)}"


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


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def missing_modules(missing: dict[str, list[str]], code: Code) -> str:
    """One line: each module some workers cannot import (``missing``: module -> where, e.g.
    "Dask worker tcp://10.0.0.5:4455"), which file needs it, and what to do."""
    needed_by = dict(code.imports)
    parts = []
    for module, where in sorted(missing.items()):
        by = f" (imported by {needed_by[module]})" if needed_by.get(module) else ""
        more = f" and {len(where) - 1} more" if len(where) > 1 else ""
        parts.append(f"module {module!r}{by} is missing on {where[0]}{more}")
    shipped = code.ship and bool(code.archive or code.folder)
    if "runners" in missing:
        hint = ("critpath's worker code (runners) is not there: leave ship on (the default) to send it, or install "
                "critpath on the workers")
    elif not shipped and set(missing) & set(code.modules):
        hint = "ship = false, so the workers must have the service code: install it there, or set ship = true"
    else:
        hint = "install it on the workers, or list it in requirements in critpath.toml"
    return "; ".join(parts) + f": {hint}"


def shared_env_problem(code: Code, seen: dict[str, dict], forwarded: bool = False) -> str | None:
    """What is wrong, in one line, when the workers (``seen``: where -> the environment a probe
    saw there) do not all see the knobs of ``code.shared_env`` alike, as absolute paths (a
    relative one, or none, is a folder of each worker's own); None when nothing is.
    ``forwarded``: the runner passes this process's value on to its workers (Ray)."""
    for name, here in code.shared_env:
        values = {where: (env or {}).get(name) for where, env in seen.items()}
        bad = {w: v for w, v in values.items()
               if not v or not os.path.isabs(v) or (here and os.path.isabs(here) and v != here)}
        if not bad and len(set(values.values())) <= 1:
            continue
        where, value = next(iter(sorted(bad.items()))) if bad else next(iter(sorted(values.items())))
        sees = f"sees {name}={value}" if value else f"does not have {name} set"
        want = here if here and os.path.isabs(here) else "/a/folder/every/worker/shares"
        where_to = ("here: critpath passes it on to the workers" if forwarded
                    else "in the workers' environment" + ("" if here and os.path.isabs(here) else ", and here"))
        return (f"the services read {name}, and every worker must use the same one: {where} {sees}"
                + (f" ({len(bad) - 1} more alike)" if len(bad) > 1 else "")
                + f"; set {name}={want} (an absolute path every worker reaches) {where_to}")
    return None
