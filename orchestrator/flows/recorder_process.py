"""The Prefect bookkeeping of a large refresh, in a process of its own.

Measured on short services (README, "Short services on Dask and Ray"): with the recorder on
threads of critpath's process, the refresh ran 7-17% (threads) and 9-31% (Dask) slower than
the simulated schedule; with no recorder at all, 1-4% and 5-11%. Building Prefect's events and
sending them (the recorder's thread, Prefect's events and log workers: about 3.5 ms of CPU per
service here) share the dispatcher's interpreter lock, so every hop waits behind them. Here the
same ``Bookkeeper`` runs in a child process; the dispatcher's thread only queues the event, and
a feeder thread pickles it down a pipe.

The child runs at a lower priority (``NICE``): where the cores are short, Prefect's part waits,
not the refresh; the end of the run waits for it as before (the final states confirmed). The
child costs about 1.3 s of CPU to start (importing Prefect), which a refresh of a few
services would notice more than its bookkeeping: ``wanted`` keeps those on a thread.

Lifetime: the child ignores SIGINT and SIGTERM, so that a Ctrl-C or a signal to the whole
process group, which critpath answers by cancelling the refresh, still finds it there to record
the cancelled states. It ends when critpath says so, or when its stdin closes: critpath is
gone (killed, crashed), and the child then delivers what it has, bounded by a few seconds, and
exits. Its stdout carries only the result; Prefect's own output goes to stderr, as before.

A first attempt's Running state waits ``HOLD_S`` before the child sends it (``Held``): a short
service that ends meanwhile costs the server one event, not two.

Protocol (pickles on stdin): the start (``Start``), then ``("event", item)``,
``("abandon", why)`` and ``("end",)``; on stdout, after the end, one ``Result``.
"""
from __future__ import annotations

import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from runners.base import register_secrets_named, secret_names

from ..execution.events import Event
from ..planning.graph import Graph
from .recorder import CONFIRM_TIMEOUT_S, MAX_LOG_LINES, Bookkeeper, Books, books_of

#: from this many services on, a refresh's bookkeeping runs in a process of its own: at ~3.5 ms
#: of critpath's CPU per service, that is the child's start-up cost (and it is off the path)
MIN_SERVICES = 100
#: the child's niceness: on a busy machine the services and the dispatcher come first
NICE = 10
#: how long a first attempt's Running state waits for its end, to travel in one event with it
#: (``Held``); most short services end within it. Read as the process starts
#: (``benchmarks.short_ab`` sets it to compare)
HOLD_S = 0.25
#: how long, after critpath vanished, the child may spend delivering what it has
ORPHAN_DRAIN_S = 3.0
#: the end of a run waits at most this long for the child's result (its own waits are bounded
#: by the drains and the confirmation, 20 s each)
RESULT_TIMEOUT_S = 90.0


def wanted(graph: Graph) -> bool:
    return len(graph.names) >= MIN_SERVICES


@dataclass(frozen=True)
class Start:
    books: dict[str, Books]
    flow_run_id: uuid.UUID
    confirm_timeout: float
    log_dir: str | None
    max_log_lines: int
    secret_names: tuple[str, ...] = ()
    hold_s: float = HOLD_S


@dataclass
class Result:
    errors: list[str] = field(default_factory=list)
    confirmed: bool | None = None
    recorded_at: float | None = None


def _plain(info: dict) -> dict:
    """``info`` that always pickles: an engine's exception becomes a RuntimeError of its text
    (the bookkeeper only asks whether the outcome is an exception)."""
    return {k: (RuntimeError(f"{type(v).__name__}: {v}") if isinstance(v, BaseException) else v)
            for k, v in info.items()}


def _child_env() -> dict[str, str]:
    """critpath's environment plus its Prefect settings (a test's ``temporary_settings`` too),
    and the API it talks to, resolved: with Prefect's temporary server, that server, not a
    second one."""
    from prefect.client.orchestration import get_client
    from prefect.settings import get_current_settings

    env = dict(os.environ)
    env.update(get_current_settings().to_environment_variables(exclude_unset=True))
    with get_client(sync_client=True) as client:
        env["PREFECT_API_URL"] = str(client.api_url).rstrip("/")
    return env


class RecorderProcess:
    """``PrefectRecorder``'s interface, with the ``Bookkeeper`` in a child process."""

    def __init__(self, graph: Graph, flow_run_id: uuid.UUID, confirm_timeout: float = CONFIRM_TIMEOUT_S,
                 log_dir: str | os.PathLike | None = None, max_log_lines: int = MAX_LOG_LINES,
                 secrets: tuple[str, ...] = ()):
        self._start = Start(books_of(graph), flow_run_id, confirm_timeout, None if log_dir is None else str(log_dir),
                            max_log_lines, tuple(dict.fromkeys((*secrets, *secret_names()))), HOLD_S)
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self._feeder = threading.Thread(target=self._feed, name="critpath-recorder-feed", daemon=True)
        self._proc: subprocess.Popen | None = None
        self.errors: list[str] = []
        self.confirmed: bool | None = None
        self.recorded_at: float | None = None
        self.unreachable: str | None = None

    def on_event(self, kind: Event, run, t: float, **info: Any) -> None:
        self._outbox.put(("event", (kind, run.name, t, run.attempts, run.error, _plain(info))))

    def abandon(self, why: str) -> None:
        self.unreachable = why
        self._outbox.put(("abandon", why))

    def __enter__(self):
        self._proc = subprocess.Popen([sys.executable, "-m", "orchestrator.flows.recorder_process"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=_child_env(),
                                      # out of the terminal's process group: a Ctrl-C there must not
                                      # reach it, even while it is still importing
                                      start_new_session=True)
        self._feeder.start()
        return self

    def _feed(self) -> None:
        pipe = self._proc.stdin
        try:
            pickle.dump(self._start, pipe)
            done = False
            while not done:
                batch = _take_all(self._outbox)  # what is queued goes in one write
                done = None in batch
                for msg in batch[:batch.index(None)] if done else batch:
                    pickle.dump(msg, pipe)
                pipe.flush()
        except Exception as exc:  # the child is gone (its exit status says more at the end), or a value would not pickle
            self.errors.append(f"Prefect bookkeeping process stopped taking events: {type(exc).__name__}: {exc}")
        # stdin stays open: ``communicate`` closes it, which the child reads as the end

    def __exit__(self, *exc):
        self._outbox.put(("end",))
        self._outbox.put(None)
        self._feeder.join()
        try:
            out, _ = self._proc.communicate(timeout=RESULT_TIMEOUT_S)
            result = Result(**pickle.loads(out)) if out else None
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
            result = None
            self.errors.append(f"Prefect bookkeeping process gave no result in {RESULT_TIMEOUT_S:g} s; stopped it")
        except Exception as e:  # anything unreadable is one line in the report
            result = None
            self.errors.append(f"Prefect bookkeeping process's result unreadable: {e}")
        if result is None:
            if self._proc.returncode:
                self.errors.append(f"Prefect bookkeeping process exited with status {self._proc.returncode}; "
                                   "the task runs of this refresh may be incomplete in Prefect")
            self.confirmed, self.recorded_at = False, time.time()
            return
        self.errors[:0] = result.errors
        self.confirmed, self.recorded_at = result.confirmed, result.recorded_at


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # see the module docstring: critpath ends it
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:  # bookkeeping yields the cores to the services and the dispatcher; it catches up after
        os.nice(NICE)
    except (AttributeError, OSError):
        pass
    result_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes where critpath's own output goes, never into the result
    inp = sys.stdin.buffer
    start: Start = pickle.load(inp)
    register_secrets_named(start.secret_names)
    keeper = Bookkeeper(start.books, start.flow_run_id, start.confirm_timeout, start.log_dir, start.max_log_lines)
    with _flow_run_context(start.flow_run_id, keeper):
        _serve(inp, keeper, result_out, start.hold_s)


def _flow_run_context(flow_run_id: uuid.UUID, keeper: Bookkeeper):
    """The flow run's context, as the recorder's thread has it in critpath's process: Prefect's
    events worker names the flow run, its flow, deployment and tags in each event's related
    resources from the context an event was sent in (and the server files the task run under
    the flow run named there). Only ``flow_run`` is read from it; nothing runs in it."""
    from contextlib import nullcontext

    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    try:
        with get_client(sync_client=True) as client:
            flow_run = client.read_flow_run(flow_run_id)
    except Exception as exc:  # the refresh goes on; the report says what was lost
        keeper.error(f"could not read flow run {flow_run_id} for its task runs: {type(exc).__name__}: {exc}")
        return nullcontext()
    return FlowRunContext.model_construct(flow_run=flow_run)


_FINAL = (Event.COMPLETE, Event.FAIL, Event.CANCEL)


class Held:
    """A first attempt's Running state waits ``hold_s`` before it is announced. A service that
    ends meanwhile goes to Prefect as one event, its final state's (the Running state inside it
    as the initial state, with the start time and run count on the task run), instead of two.
    On short services that halves the events the server must store while the refresh runs
    (README, "Short services"); a longer service shows Running in the UI ``hold_s`` late.
    Everything else passes at once, in order: a held dispatch goes out before any later state
    of its service, and every held one before the end (or an abandon)."""

    def __init__(self, hold_s: float):
        self.hold_s = hold_s
        self._held: dict[str, tuple[Any, float]] = {}  # service -> (its dispatch, when it is due)

    def take(self, msg, now: float) -> list[tuple[Any, bool]]:
        """What to apply now for ``msg``: (message, announce) pairs."""
        if msg[0] != "event":
            return [*self.flush(), (msg, True)]
        kind, name, attempt = msg[1][0], msg[1][1], msg[1][3]
        if kind == Event.DISPATCH and attempt == 1:
            self._held[name] = (msg, now + self.hold_s)
            return []
        if name not in self._held:
            return [(msg, True)]
        dispatch, _ = self._held.pop(name)
        return [(dispatch, not (kind in _FINAL and attempt == 1)), (msg, True)]

    def due(self, now: float) -> list[tuple[Any, bool]]:
        """The held dispatches whose time is up, announced."""
        out = [name for name, (_, at) in self._held.items() if at <= now]
        return [(self._held.pop(name)[0], True) for name in out]

    def flush(self) -> list[tuple[Any, bool]]:
        out = [(msg, True) for msg, _ in self._held.values()]
        self._held.clear()
        return out

    def wait_s(self, now: float) -> float | None:
        """How long until the next held dispatch is due; None with nothing held."""
        return max(0.0, min(at for _, at in self._held.values()) - now) if self._held else None


def _reader(inp, inbox: queue.SimpleQueue) -> None:
    """Every message from critpath into ``inbox``; None when critpath is gone (or after the end)."""
    while True:
        try:
            msg = pickle.load(inp)
        except Exception:  # end of file (critpath is gone), or a truncated write as it died
            inbox.put(None)
            return
        inbox.put(msg)
        if msg[0] == "end":
            return


def _take_all(q: queue.SimpleQueue, timeout: float | None = None) -> list:
    """The next item of ``q`` (waiting for it, at most ``timeout`` seconds: then none), and every
    item that arrived before it was read."""
    try:
        batch = [q.get(timeout=timeout)]
    except queue.Empty:
        return []
    while True:
        try:
            batch.append(q.get_nowait())
        except queue.Empty:
            return batch


def _serve(inp, keeper: Bookkeeper, result_out, hold_s: float = HOLD_S) -> None:
    inbox: queue.SimpleQueue = queue.SimpleQueue()
    threading.Thread(target=_reader, args=(inp, inbox), name="critpath-recorder-read", daemon=True).start()
    ended = gone = False
    held = Held(hold_s)
    while not (ended or gone):
        batch = _take_all(inbox, held.wait_s(time.monotonic()))
        if None in batch:
            gone = True
            batch = [*batch[:batch.index(None)], ("abandon", None)]  # what is held goes out too
        now = time.monotonic()
        todo = [pair for msg in batch for pair in held.take(msg, now)] + held.due(now)
        for msg, announce in todo:
            if msg[0] == "event":
                names = getattr(msg[1][5].get("outcome"), "secret_names", ())
                if names:
                    register_secrets_named(names)
                keeper.apply(msg[1], announce=announce)
            elif msg[0] == "abandon" and msg[1] is not None:
                keeper.abandon(msg[1])
            elif msg[0] == "end":
                ended = True
    if not ended:  # nobody waits for a confirmation: deliver what there is, briefly, and go
        keeper.finish(drain_timeout=ORPHAN_DRAIN_S, confirm=False)
        os._exit(0)
    keeper.finish()
    # as plain data: this module is ``__main__`` here, and its classes would not unpickle there
    pickle.dump(vars(Result(keeper.errors, keeper.confirmed, keeper.recorded_at)), result_out)
    result_out.flush()


if __name__ == "__main__":
    main()
