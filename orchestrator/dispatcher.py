"""The dispatcher: runs a plan on a runner, owning every policy decision.

Loop (event-driven, one thread):
  1. start every service the policy (``policy.ReadyQueue``) allows now;
  2. block on the inbox until a runner reports an outcome, or until the next
     timer (an attempt's timeout, a retry's delay) is due; never poll;
  3. drain every other outcome already queued, so that services finishing at the
     same moment are all seen before the next choice; go to 1.

Per attempt:   ready -> dispatched -> completed | failed -> (retry after delay | failed for good)
A timeout ends the attempt in the dispatcher: its slots are freed at once, the
runner is asked to cancel it, and whatever it reports later is ignored.
A service that fails for good skips its descendants and nothing else.

Bookkeeping (Prefect task runs, logs, progress) goes to ``observers`` that must not
block; ``recorder.PrefectRecorder`` does its work on its own thread. The event log
(``Dispatcher.events``) records every decision in order for tests and reports.
"""
from __future__ import annotations

import heapq
import itertools
import queue
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from .planner import Plan
from .policy import ReadyQueue


@dataclass
class ServiceRun:
    name: str
    state: str = "waiting"  # waiting | ready | running | completed | failed | skipped
    attempts: int = 0
    start: float | None = None  # worker-measured, last attempt
    end: float | None = None
    worker: str | None = None
    error: str | None = None
    traceback: str | None = None
    dispatched: float | None = None  # dispatcher clock, last attempt
    finished: float | None = None
    skipped_because: str | None = None
    history: list[dict] = field(default_factory=list)  # one entry per attempt


class Observer(Protocol):
    def on_event(self, kind: str, run: ServiceRun, t: float, **info: Any) -> None: ...


class Dispatcher:
    def __init__(self, plan: Plan, runner, observers: list[Observer] | None = None,
                 max_concurrency: int | None = None, clock: Callable[[], float] = time.time):
        self.plan = plan
        self.graph = plan.graph
        self.runner = runner
        self.observers = list(observers or [])
        self.max_concurrency = max_concurrency or plan.max_concurrency
        self.clock = clock
        self.runs = {n: ServiceRun(n) for n in self.graph.names}
        self.events: list[tuple[float, str, str]] = []  # (t, kind, service)
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._timers: list[tuple[float, int, str, int, int]] = []  # (due, seq, kind, index, attempt)
        self._seq = itertools.count()
        self._inflight: dict[int, tuple[int, Any]] = {}  # index -> (attempt, runner handle)
        self.first_dispatch: float | None = None
        self.last_completion: float | None = None
        self.cancelled: str | None = None  # why, once the cancel took effect
        self._cancel_requested: str | None = None
        self._retries_pending = 0  # retry timers not yet fired; timeout timers don't keep the run alive

    def cancel(self, reason: str = "cancelled") -> None:
        """Stop the run: nothing more starts, in-flight work is cancelled on the engine.
        Safe to call from any thread or a signal handler, also before ``run()``."""
        self._cancel_requested = self._cancel_requested or reason
        self._inbox.put((-1, 0, reason))  # wakes the loop if it is waiting

    # -- helpers -----------------------------------------------------------
    def _emit(self, kind: str, i: int, **info) -> None:
        t = self.clock()
        run = self.runs[self.graph.names[i]]
        self.events.append((t, kind, run.name))
        for obs in self.observers:
            obs.on_event(kind, run, t, **info)

    def _timer(self, delay: float, kind: str, i: int, attempt: int) -> None:
        heapq.heappush(self._timers, (self.clock() + delay, next(self._seq), kind, i, attempt))

    # -- the loop ----------------------------------------------------------
    def run(self) -> dict[str, ServiceRun]:
        self._rank = self.plan.rank or self.plan.priority  # see planner: "Dispatch rank"
        q = self._q = ReadyQueue(self.graph, self._rank, self.max_concurrency)
        for heap in q.heaps.values():
            for _, i in sorted(heap):
                self.runs[self.graph.names[i]].state = "ready"
                self._emit("ready", i)
        while self.cancelled is None:
            if self._cancel_requested:
                self._cancel_all(self._cancel_requested)
                break
            self._dispatch()
            if not self._inflight and not self._retries_pending and q.idle():
                break  # stale timeout timers of finished attempts must not keep the run alive
            timeout = max(0.0, self._timers[0][0] - self.clock()) if self._timers else None
            # marks where the dispatcher goes idle: tests check that no ready service
            # could have had a free slot at any of these points (work conservation)
            self.events.append((self.clock(), "wait", ""))
            try:
                self._handle(*self._inbox.get(timeout=timeout))
                while True:  # see every outcome already here before choosing again
                    self._handle(*self._inbox.get_nowait())
            except queue.Empty:
                pass
            now = self.clock()
            while self._timers and self._timers[0][0] <= now:
                _, _, kind, i, attempt = heapq.heappop(self._timers)
                if kind == "timeout":
                    self._timeout(i, attempt)
                else:  # retry delay over: ready again
                    self._retries_pending -= 1
                    self._ready_again(i)
        return self.runs

    def _dispatch(self) -> None:
        from runners.base import Job  # plain data; runners/base imports no engine

        # a submit that fails frees its slot at once: keep choosing until nothing can start
        while batch := self._q.pop_startable():
            self._start_batch(batch, Job)

    def _start_batch(self, batch, Job) -> None:
        for i in batch:
            name = self.graph.names[i]
            svc = self.graph.services[name]
            run = self.runs[name]
            run.attempts += 1
            run.state = "running"
            run.dispatched = self.clock()
            self.first_dispatch = self.first_dispatch or run.dispatched
            attempt = run.attempts
            package = svc.call.split(".", 1)[0].split(":", 1)[0] if svc.call else None
            job = Job(f"{name}#{attempt}", name, svc.call, dict(svc.params), svc.duration, svc.kind, package)
            self._emit("dispatch", i, attempt=attempt)
            done = lambda out, i=i, attempt=attempt: self._inbox.put((i, attempt, out))  # noqa: E731
            try:
                handle = self.runner.submit(job, self._rank[i], done)
            except Exception as exc:  # e.g. unpicklable params: fail this service, not the run
                self._inflight[i] = (attempt, None)
                self._handle(i, attempt, exc)
                continue
            self._inflight[i] = (attempt, handle)
            if svc.timeout:
                self._timer(svc.timeout, "timeout", i, attempt)

    def _handle(self, i: int, attempt: int, out) -> None:
        if i < 0:
            self._cancel_all(out)
            return
        if self.cancelled is not None:
            return  # reports after a cancel change nothing
        current = self._inflight.get(i)
        if current is None or current[0] != attempt:
            return  # a late report from an attempt that already timed out
        del self._inflight[i]
        self._q.release(i)
        run = self.runs[self.graph.names[i]]
        run.finished = self.clock()
        if isinstance(out, BaseException):  # the engine, not the service, failed
            ok, error, tb = False, f"{type(out).__name__}: {out}", None
            run.start, run.end, run.worker = run.dispatched, run.finished, None
            lost = type(out).__name__ == "WorkerLost"
        else:
            ok, error, tb = out.ok, out.error, out.traceback
            run.start, run.end, run.worker = out.start, out.end, out.worker
            lost = False
        run.history.append({"attempt": attempt, "start": run.start, "end": run.end, "worker": run.worker,
                            "ok": ok, "error": error, "lost": lost})
        if ok:
            run.state, run.error, run.traceback = "completed", None, None
            self.last_completion = run.finished
            self._emit("complete", i, outcome=out)
            for j in self._q.completed(i):
                self.runs[self.graph.names[j]].state = "ready"
                self._emit("ready", j)
        else:
            self._attempt_failed(i, error, tb, None if isinstance(out, BaseException) else out, lost)

    def _cancel_all(self, reason: str) -> None:
        if self.cancelled is not None:
            return
        self.cancelled = reason
        self._timers.clear()
        self._retries_pending = 0
        for i, (attempt, handle) in sorted(self._inflight.items()):
            if handle is not None:
                try:
                    self.runner.cancel(handle)
                except Exception:  # noqa: BLE001 - best effort while shutting down
                    pass
            run = self.runs[self.graph.names[i]]
            run.state, run.finished = "cancelled", self.clock()
            run.error = f"cancelled while running: {reason}"
            self._emit("cancel", i, reason=reason)
        self._inflight.clear()

    def _timeout(self, i: int, attempt: int) -> None:
        current = self._inflight.get(i)
        if current is None or current[0] != attempt:
            return  # finished in time
        del self._inflight[i]
        self._q.release(i)
        if current[1] is not None:
            self.runner.cancel(current[1])
        run = self.runs[self.graph.names[i]]
        run.finished = self.clock()
        run.start, run.end, run.worker = run.dispatched, run.finished, None
        limit = self.graph.services[run.name].timeout
        error = f"TimeoutError: attempt {attempt} of {run.name!r} exceeded its timeout of {limit:g} s"
        run.history.append({"attempt": attempt, "start": run.start, "end": run.end, "worker": None,
                            "ok": False, "error": error, "lost": False})
        self._attempt_failed(i, error, None, None)

    def _attempt_failed(self, i: int, error: str | None, tb: str | None, outcome, lost: bool = False) -> None:
        run = self.runs[self.graph.names[i]]
        svc = self.graph.services[run.name]
        run.error, run.traceback = error, tb
        # a lost worker is the infrastructure's failure, not the service's: it earns
        # one more attempt on a surviving worker even when the service has no retries
        lost_attempts = sum(1 for h in run.history if h["lost"])
        if run.attempts <= svc.retries + min(lost_attempts, 1):
            run.state = "retrying"
            self._emit("retry", i, outcome=outcome, delay=svc.retry_delay)
            if svc.retry_delay > 0:
                self._retries_pending += 1
                self._timer(svc.retry_delay, "retry", i, run.attempts)
            else:
                self._ready_again(i)
            return
        run.state = "failed"
        self.last_completion = run.finished
        self._emit("fail", i, outcome=outcome)
        for j in self._q.failed(i):
            skipped = self.runs[self.graph.names[j]]
            skipped.state = "skipped"
            skipped.skipped_because = run.name
            self._emit("skip", j, upstream=run.name)

    def _ready_again(self, i: int) -> None:
        self.runs[self.graph.names[i]].state = "ready"
        self._q.push(i)
        self._emit("ready", i)
