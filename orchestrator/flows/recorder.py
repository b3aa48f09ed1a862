"""Prefect bookkeeping, off the critical path.

Every service is a real Prefect task run of the refresh's flow run, with its
states (Pending, Running, AwaitingRetry/Retrying, Completed, Failed, or a
Cancelled state named ``Skipped`` for services downstream of a failure), its
upstreams as ``wait_for`` inputs (the UI draws the graph), and the log lines the
service emitted on its worker.

How: Prefect 3 records task runs client-side. Its own task engine builds a
``TaskRun`` in the flow's process and emits ``prefect.task-run.<State>`` events,
which the server's task-run recorder persists; logs go through ``APILogHandler``
with explicit run ids. This module does exactly that, but from a thread of its
own and with the timestamps measured by the dispatcher and the worker, so the
dispatcher never waits for Prefect and the engines never import it. This is why a
chain hop costs what the raw engine costs rather than Prefect's ~70 ms per task on
Dask/Ray (see README, "Design").

The thread runs inside a copy of the flow's ``contextvars`` context, so it talks
to the same API (a running server or Prefect's temporary local one).

Nothing here may fail the refresh, and nothing may fail silently: an event Prefect
refused (too large, invalid) and a final state the server had not stored when the
run ended are kept in ``errors`` (secrets masked), which the report carries as
``prefect_errors`` and the summary reports.
"""
from __future__ import annotations

import contextvars
import logging
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from prefect import states
from prefect.client.schemas.objects import TaskRun, TaskRunPolicy, TaskRunResult
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogHandler, APILogWorker
from prefect.utilities.engine import emit_task_run_state_change_event

from runners.base import redact

from ..execution.events import Event
from ..planning.graph import Graph
from ..support.logs import quiet

#: how long the end of a run waits for the server to store the final states (see _confirm_persisted)
CONFIRM_TIMEOUT_S = 20.0
#: one entry of ``errors`` is cut to this many characters (an exception can quote a whole payload)
MAX_ERROR_CHARS = 500


#: log lines of one attempt sent to Prefect; the rest go to a file (see ``_send_logs``)
MAX_LOG_LINES = 1000


def _ts(t: float) -> datetime:
    return datetime.fromtimestamp(t, timezone.utc)


@dataclass(frozen=True)
class Books:
    """What a service's task run records of its declaration: plain data, so that it pickles
    (``flows.recorder_process``) whatever the service's params hold."""

    tags: tuple[str, ...]
    retries: int
    retry_delay: float
    upstream: tuple[str, ...]


def books_of(graph: Graph) -> dict[str, Books]:
    out = {}
    for name in graph.names:
        svc = graph.services[name]
        out[name] = Books(tuple(svc.tags) + ((f"pool:{svc.pool}",) if svc.pool else ()), svc.retries,
                          float(svc.retry_delay), tuple(graph.names[u] for u in graph.preds[graph.index[name]]))
    return out


class Bookkeeper:
    """Prefect's side of the recorder: turns the dispatcher's events into task runs, states and
    log lines. It runs wherever its host puts it: a thread of critpath's process
    (``PrefectRecorder``) or a process of its own (``flows.recorder_process``)."""

    def __init__(self, books: dict[str, Books], flow_run_id: uuid.UUID, confirm_timeout: float = CONFIRM_TIMEOUT_S,
                 log_dir: str | os.PathLike | None = None, max_log_lines: int = MAX_LOG_LINES):
        self.books = books
        self.flow_run_id = flow_run_id
        self.confirm_timeout = confirm_timeout
        self.log_dir = None if log_dir is None else Path(log_dir).absolute()
        self.max_log_lines = max_log_lines
        self.logs_dropped = 0  # lines kept out of Prefect, over all attempts
        # ids are assigned up front so that wait_for can name any upstream
        self.ids = {n: uuid.uuid4() for n in books}
        self.task_runs: dict[str, TaskRun] = {}
        self._ready_at: dict[str, float] = {}
        self._last_event: dict[str, Any] = {}
        self._final_sent: set[str] = set()  # services whose final state event went to the events worker
        self._logs = APILogHandler()
        #: what bookkeeping failed, one line each, secrets masked: the report's ``prefect_errors``
        self.errors: list[str] = []
        self.confirmed: bool | None = None  # set by ``finish``
        self.recorded_at: float | None = None
        #: why the API no longer answers (``abandon``): nothing more is sent or awaited
        self.unreachable: str | None = None

    def apply(self, item, announce: bool = True) -> None:
        """One event of the dispatcher, ``(kind, name, t, attempts, error, info)``; never raises.
        ``announce=False`` on a first dispatch: the task run is made Running here but not sent,
        as its final state is already known (``recorder_process.Held``): one event for both."""
        try:
            self._apply(*item, announce=announce)
        except Exception as exc:  # bookkeeping must never take the refresh down, nor fail unseen
            self.error(f"{item[1]} ({item[0]}): {type(exc).__name__}: {exc}")

    def abandon(self, why: str) -> None:
        self.unreachable = why
        self.error(why)

    def finish(self, drain_timeout: float = 20.0, confirm: bool = True) -> None:
        """Every event and log line delivered, then the final states confirmed (bounded)."""
        if self.unreachable:
            self.confirmed, self.recorded_at = False, time.time()
            return
        # deliver every event and log line before the flow run is finalised; while they
        # drain, both workers log "Still processing items: N items remaining..." as a
        # WARNING every 4 s: the progress of this wait, not a problem (their errors still show)
        with quiet("EventsWorker", "APILogWorker"):
            EventsWorker.drain_all(timeout=drain_timeout)
            APILogWorker.drain_all(timeout=drain_timeout)
        self.confirmed = self._confirm_persisted(self.confirm_timeout) if confirm else None
        self.recorded_at = time.time()

    def error(self, text: str) -> None:
        """One line of ``errors``: secrets masked, cut to ``MAX_ERROR_CHARS``."""
        text = redact(text) or ""
        self.errors.append(text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS - 3] + "...")

    def _confirm_persisted(self, timeout: float = CONFIRM_TIMEOUT_S) -> bool:
        """Wait (bounded) until the server has stored the final state of every task run.

        Events are delivered asynchronously; without this, Prefect's temporary local
        server can be stopped at process exit while it is still writing the last
        states, losing them and printing "Error flushing events" tracebacks.
        """
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterId,
            TaskRunFilter,
            TaskRunFilterState,
            TaskRunFilterStateType,
        )
        from prefect.client.schemas.sorting import TaskRunSort

        # only what was sent: an event Prefect refused is in ``errors`` already, and waiting
        # for it would only add the whole timeout to the run
        want = len(self._final_sent)
        final = TaskRunFilter(state=TaskRunFilterState(type=TaskRunFilterStateType(
            any_=["COMPLETED", "FAILED", "CANCELLED", "CRASHED"])))
        runs = FlowRunFilter(id=FlowRunFilterId(any_=[self.flow_run_id]))
        deadline = time.monotonic() + timeout
        failure = ""
        # a busy server must not hold the refresh: each request gets a few seconds,
        # and the whole check gives up at the deadline with a warning
        with get_client(sync_client=True, httpx_settings={"timeout": 5.0}) as client:
            while True:
                got, page = 0, 200
                try:
                    while True:
                        batch = client.read_task_runs(flow_run_filter=runs, task_run_filter=final, limit=page,
                                                      offset=got, sort=TaskRunSort.ID_DESC)
                        got += len(batch)
                        if len(batch) < page or time.monotonic() > deadline:
                            break
                except Exception as exc:  # timeouts, 503s: try again until the deadline
                    got, failure = -1, f" (last request: {type(exc).__name__}: {exc})"
                if got >= want:
                    return True
                if time.monotonic() > deadline:
                    logging.getLogger("critpath").warning(
                        "Prefect has stored %d of %d final task run states after %.0f s; "
                        "the rest may show as still running in the UI", got, want, timeout)
                    stored = "could not be read" if got < 0 else f"{got} of {want} stored"
                    self.error(f"final task run states not confirmed: {stored} after {timeout:g} s; "
                                f"the rest may show as still running in the UI{failure}")
                    return False
                time.sleep(0.1)  # bounded wait for a server we do not control; not on the critical path

    def _apply(self, kind, name, t, attempt, error, info, announce: bool = True) -> None:
        if kind == Event.READY:
            self._ready_at.setdefault(name, t)
            return
        if kind == Event.DISPATCH:
            running = states.Running(timestamp=_ts(t))
            if attempt > 1:  # the retry was already announced; now it runs again
                self._set(name, running)
            else:
                # created straight into Running: a separate Pending event would cost the
                # server a third write per service for a state that lasted microseconds
                self._create(name, self._ready_at.get(name, t), running, emit=announce)
            return
        outcome = info.get("outcome")
        if outcome is not None and not isinstance(outcome, BaseException):
            self._send_logs(name, outcome.logs, attempt)
        end = getattr(outcome, "end", None) or t
        if kind == Event.COMPLETE:
            self._set(name, states.Completed(timestamp=_ts(end)))
        elif kind == Event.RETRY:
            self._log(name, logging.ERROR, t, f"Attempt {attempt} failed: {error}" +
                      (f"\n{outcome.traceback}" if getattr(outcome, "traceback", None) else ""))
            delay = info.get("delay") or 0
            state = (states.AwaitingRetry(scheduled_time=_ts(t + delay), timestamp=_ts(t)) if delay
                     else states.Retrying(timestamp=_ts(t)))
            self._set(name, state)
        elif kind == Event.FAIL:
            self._log(name, logging.ERROR, t, f"Failed after {attempt} attempt(s): {error}" +
                      (f"\n{outcome.traceback}" if getattr(outcome, "traceback", None) else ""))
            self._set(name, states.Failed(message=error, timestamp=_ts(max(end, t))))
        elif kind == Event.CANCEL:
            self._set(name, states.Cancelled(timestamp=_ts(t), message=f"cancelled: {info.get('reason')}"))
        elif kind == Event.SKIP:
            upstream = info.get("upstream")
            self._create(name, t, states.Cancelled(name="Skipped", timestamp=_ts(t),
                                                   message=f"skipped: upstream {upstream!r} failed"))

    def _create(self, name: str, t: float, first: states.State, emit: bool = True) -> None:
        svc = self.books[name]
        created = _ts(t)
        self.task_runs[name] = TaskRun(
            id=self.ids[name], name=name, flow_run_id=self.flow_run_id,
            task_key=f"critpath.{name}", dynamic_key="0",
            empirical_policy=TaskRunPolicy(retries=svc.retries, retry_delay=int(svc.retry_delay)),
            tags=list(svc.tags),
            task_inputs={"wait_for": [TaskRunResult(id=self.ids[u]) for u in svc.upstream]},
            expected_start_time=created, state=None, created=created,
        )
        self._set(name, first, initial=True, emit=emit)

    def _set(self, name: str, new: states.State, initial: bool = False, emit: bool = True) -> None:
        """What Prefect's task engine does in ``set_state``, with our timestamps."""
        tr = self.task_runs[name]
        last = None if initial else tr.state
        if last is not None and new.timestamp <= last.timestamp:
            new.timestamp = last.timestamp + timedelta(microseconds=1)  # keep states ordered
        new.state_details.task_run_id = tr.id
        new.state_details.flow_run_id = tr.flow_run_id
        tr.state, tr.state_id, tr.state_type, tr.state_name = new, new.id, new.type, new.name
        if last is not None and last.is_running():
            tr.total_run_time += new.timestamp - last.timestamp
        if new.is_running() and new.name != "Retrying":
            tr.run_count += 1
            tr.start_time = tr.start_time or new.timestamp
        if new.is_final():
            tr.end_time = new.timestamp
        if not emit:  # the next state's event carries this one as its initial state
            return
        event = emit_task_run_state_change_event(
            task_run=tr, initial_state=last, validated_state=new, follows=self._last_event.get(name))
        if event is None:  # Prefect logged why (an event it refuses to build raises instead)
            raise RuntimeError(f"Prefect did not emit the {new.name} event")
        self._last_event[name] = event
        if new.is_final():
            self._final_sent.add(name)

    def _send_logs(self, name: str, logs, attempt: int = 1) -> None:
        """The attempt's log lines to its task run: all of them up to ``max_log_lines``. Beyond
        that Prefect's server stores about a thousand lines a second here, so a service that
        logs 200,000 lines would hold critpath's exit for minutes: the first lines and the last
        go to Prefect, with one line saying how many were left out and where every line is."""
        cap = self.max_log_lines
        if len(logs) <= cap:
            shipped, dropped = logs, 0
        else:
            head, tail = cap - cap // 4, cap // 4
            shipped, dropped = [*logs[:head], *logs[len(logs) - tail:]], len(logs) - cap
        where = self._spill(name, attempt, logs) if dropped else None
        for k, (created, level, logger, message) in enumerate(shipped):
            if dropped and k == cap - cap // 4:
                self.logs_dropped += dropped
                self._log(name, logging.WARNING, created,
                          f"critpath: {dropped} log lines of this attempt are not in Prefect (it keeps "
                          f"{cap} per attempt: the first and the last); "
                          + (f"every line is in {where}" if where else "they were not kept"))
            self._log(name, level, created, message, logger)

    def _spill(self, name: str, attempt: int, logs) -> str | None:
        """Every line of the attempt to ``log_dir/<service>.<attempt>.log``; the path, or None."""
        if self.log_dir is None:
            return None
        import re

        safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:100] or "service"  # a name cannot steer the path
        path = self.log_dir / f"{safe}.{attempt}.log"
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            with open(path, "w", encoding="utf-8", errors="replace") as f:
                for created, level, logger, message in logs:
                    f.write(f"{_ts(created).isoformat()} {logging.getLevelName(level)} {logger}: {message}\n")
        except OSError as exc:
            self.errors.append(f"{name}: could not keep its log lines in {path}: {exc}")
            return None
        return str(path)

    def _log(self, name: str, level: int, created: float, message: str, logger: str = "prefect.task_runs"):
        record = logging.LogRecord(logger, level, "", 0, message, None, None)
        record.created = created
        record.flow_run_id = self.flow_run_id
        record.task_run_id = self.ids[name]
        record.task_run_name = name
        self._logs.handle(record)


class PrefectRecorder:
    """A dispatcher observer that mirrors its events as Prefect task runs, from a thread of
    critpath's own process (``Bookkeeper`` does the work)."""

    def __init__(self, graph: Graph, flow_run_id: uuid.UUID, confirm_timeout: float = CONFIRM_TIMEOUT_S,
                 log_dir: str | os.PathLike | None = None, max_log_lines: int = MAX_LOG_LINES):
        self.keeper = Bookkeeper(books_of(graph), flow_run_id, confirm_timeout, log_dir, max_log_lines)
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._loop,),
                                        name="critpath-recorder", daemon=True)

    errors = property(lambda self: self.keeper.errors)
    confirmed = property(lambda self: self.keeper.confirmed)
    recorded_at = property(lambda self: self.keeper.recorded_at)
    unreachable = property(lambda self: self.keeper.unreachable)

    # -- observer side (dispatcher thread): never blocks --------------------
    def on_event(self, kind: Event, run, t: float, **info: Any) -> None:
        self._inbox.put((kind, run.name, t, run.attempts, run.error, info))

    def __enter__(self):
        self._thread.start()
        return self

    def abandon(self, why: str) -> None:
        """The API does not answer (``why``): on exit, wait neither for the events and log
        lines still queued nor for the server to confirm the final states."""
        self.keeper.abandon(why)

    def __exit__(self, *exc):
        self._inbox.put(None)
        self._thread.join()
        self.keeper.finish()

    def _loop(self) -> None:
        while (item := self._inbox.get()) is not None:
            self.keeper.apply(item)
