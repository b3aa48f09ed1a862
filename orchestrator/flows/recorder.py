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
"""
from __future__ import annotations

import contextvars
import logging
import queue
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from prefect import states
from prefect.client.schemas.objects import TaskRun, TaskRunPolicy, TaskRunResult
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogHandler, APILogWorker
from prefect.utilities.engine import emit_task_run_state_change_event

from ..planning.graph import Graph


def _ts(t: float) -> datetime:
    return datetime.fromtimestamp(t, timezone.utc)


class PrefectRecorder:
    """A dispatcher observer that mirrors its events as Prefect task runs."""

    def __init__(self, graph: Graph, flow_run_id: uuid.UUID):
        self.graph = graph
        self.flow_run_id = flow_run_id
        # ids are assigned up front so that wait_for can name any upstream
        self.ids = {n: uuid.uuid4() for n in graph.names}
        self.task_runs: dict[str, TaskRun] = {}
        self._ready_at: dict[str, float] = {}
        self._last_event: dict[str, Any] = {}
        self._logs = APILogHandler()
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._loop,),
                                        name="critpath-recorder", daemon=True)
        self.errors: list[str] = []

    # -- observer side (dispatcher thread): never blocks --------------------
    def on_event(self, kind: str, run, t: float, **info: Any) -> None:
        self._inbox.put((kind, run.name, t, run.attempts, run.error, info))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._inbox.put(None)
        self._thread.join()
        # deliver every event and log line before the flow run is finalised
        EventsWorker.drain_all(timeout=20)
        APILogWorker.drain_all(timeout=20)
        self.confirmed = self._confirm_persisted()
        self.recorded_at = time.time()

    def _confirm_persisted(self, timeout: float = 20.0) -> bool:
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

        want = sum(1 for tr in self.task_runs.values() if tr.state is not None and tr.state.is_final())
        final = TaskRunFilter(state=TaskRunFilterState(type=TaskRunFilterStateType(
            any_=["COMPLETED", "FAILED", "CANCELLED", "CRASHED"])))
        runs = FlowRunFilter(id=FlowRunFilterId(any_=[self.flow_run_id]))
        deadline = time.monotonic() + timeout
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
                except Exception:  # timeouts, 503s: try again until the deadline
                    got = -1
                if got >= want:
                    return True
                if time.monotonic() > deadline:
                    logging.getLogger("critpath").warning(
                        "Prefect has stored %d of %d final task run states after %.0f s; "
                        "the rest may show as still running in the UI", got, want, timeout)
                    return False
                time.sleep(0.1)  # bounded wait for a server we do not control; not on the critical path

    # -- recorder thread ----------------------------------------------------
    def _loop(self) -> None:
        while (item := self._inbox.get()) is not None:
            try:
                self._apply(*item)
            except Exception as exc:  # bookkeeping must never take the refresh down
                self.errors.append(f"{item[1]}: {type(exc).__name__}: {exc}")

    def _apply(self, kind, name, t, attempt, error, info) -> None:
        if kind == "ready":
            self._ready_at.setdefault(name, t)
            return
        if kind == "dispatch":
            running = states.Running(timestamp=_ts(t))
            if attempt > 1:  # the retry was already announced; now it runs again
                self._set(name, running)
            else:
                # created straight into Running: a separate Pending event would cost the
                # server a third write per service for a state that lasted microseconds
                self._create(name, self._ready_at.get(name, t), running)
            return
        outcome = info.get("outcome")
        if outcome is not None and not isinstance(outcome, BaseException):
            self._send_logs(name, outcome.logs)
        end = getattr(outcome, "end", None) or t
        if kind == "complete":
            self._set(name, states.Completed(timestamp=_ts(end)))
        elif kind == "retry":
            self._log(name, logging.ERROR, t, f"Attempt {attempt} failed: {error}" +
                      (f"\n{outcome.traceback}" if getattr(outcome, "traceback", None) else ""))
            delay = info.get("delay") or 0
            state = (states.AwaitingRetry(scheduled_time=_ts(t + delay), timestamp=_ts(t)) if delay
                     else states.Retrying(timestamp=_ts(t)))
            self._set(name, state)
        elif kind == "fail":
            self._log(name, logging.ERROR, t, f"Failed after {attempt} attempt(s): {error}" +
                      (f"\n{outcome.traceback}" if getattr(outcome, "traceback", None) else ""))
            self._set(name, states.Failed(message=error, timestamp=_ts(max(end, t))))
        elif kind == "cancel":
            self._set(name, states.Cancelled(timestamp=_ts(t), message=f"cancelled: {info.get('reason')}"))
        elif kind == "skip":
            upstream = info.get("upstream")
            self._create(name, t, states.Cancelled(name="Skipped", timestamp=_ts(t),
                                                   message=f"skipped: upstream {upstream!r} failed"))

    def _create(self, name: str, t: float, first: states.State) -> None:
        svc = self.graph.services[name]
        ups = self.graph.preds[self.graph.index[name]]
        created = _ts(t)
        tags = list(svc.tags) + ([f"pool:{svc.pool}"] if svc.pool else [])
        self.task_runs[name] = TaskRun(
            id=self.ids[name], name=name, flow_run_id=self.flow_run_id,
            task_key=f"critpath.{name}", dynamic_key="0",
            empirical_policy=TaskRunPolicy(retries=svc.retries, retry_delay=int(svc.retry_delay)),
            tags=tags,
            task_inputs={"wait_for": [TaskRunResult(id=self.ids[self.graph.names[u]]) for u in ups]},
            expected_start_time=created, state=None, created=created,
        )
        self._set(name, first, initial=True)

    def _set(self, name: str, new: states.State, initial: bool = False) -> None:
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
        self._last_event[name] = emit_task_run_state_change_event(
            task_run=tr, initial_state=last, validated_state=new, follows=self._last_event.get(name))

    def _send_logs(self, name: str, logs) -> None:
        for created, level, logger, message in logs:
            self._log(name, level, created, message, logger)

    def _log(self, name: str, level: int, created: float, message: str, logger: str = "prefect.task_runs"):
        record = logging.LogRecord(logger, level, "", 0, message, None, None)
        record.created = created
        record.flow_run_id = self.flow_run_id
        record.task_run_id = self.ids[name]
        record.task_run_name = name
        self._logs.handle(record)
