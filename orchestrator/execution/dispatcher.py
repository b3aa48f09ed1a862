"""The dispatcher: runs a plan on a runner, owning every policy decision.

Loop (event-driven, one thread):
  1. start every service the policy (``policy.ReadyQueue``) allows now;
  2. block on the inbox until a runner reports an outcome, or until the next
     timer (an attempt's timeout, a retry's delay) is due; never poll;
  3. drain every other outcome already queued, so that services finishing at the
     same moment are all seen before the next choice; go to 1.

Per attempt:   ready -> running -> completed | retrying (after its delay: ready) | failed
A timeout ends the attempt in the dispatcher: its slots are freed at once, the
runner is asked to cancel it, and whatever it reports later is ignored.
A service that fails for good skips its descendants and nothing else.

Retry policy, all of it here (runners only report what happened):
  * a failed attempt is retried while ``attempts <= retries``, after ``retry_delay``;
  * a lost worker (``WorkerLost``) earns one more attempt, even with ``retries=0``:
    the infrastructure failed, not the service;
  * an outcome marked ``permanent`` (the service's module, or one it imports, is missing
    on its worker) fails the service at once, whatever its retries;
  * a job killed by a worker restart critpath itself asked for (``RestartedWorkerLost``,
    to stop a timed-out neighbour) is sent again at once as the same attempt, keeping
    its slot and its timeout, up to ``MAX_RESTART_RESENDS`` times; after that it is lost.

State kept:
  * ``_runs``: one ``ServiceRun`` per service, by index; ``runs``: the same records by name;
  * ``_q``: the ``ReadyQueue`` (ready heaps, unfinished-upstream counts, running counts);
  * ``_inflight``: index -> ``InFlight`` (attempt, runner handle, resends) of running attempts;
  * ``_timers``: a heap of ``Timer`` (attempt timeouts, retry delays, shared pools to ask again);
  * ``shared``: with pools shared across refreshes, a ``sharing.SharedGate`` (leases held,
    pools known busy, time each service waited for a shared slot);
  * ``_retries_pending``: retry timers not yet fired (timeout timers never keep the run alive);
  * ``cancelled`` / ``_cancel_requested``: why the run stopped, once it did / was asked to.

Bookkeeping (Prefect task runs, logs, progress, the ledger) goes to ``observers``,
which must not block; ``flows.recorder.PrefectRecorder`` does its work on its own
thread. ``events`` logs every decision in order (``Logged`` records) for tests and reports.
"""
from __future__ import annotations

import heapq
import itertools
import queue
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from runners.base import Job, Outcome, RestartedWorkerLost, WorkerLost, describe_exception

from ..planning.planner import Plan
from ..planning.policy import ReadyQueue
from .events import Attempt, Event, Logged, Observer, ServiceRun
from .flights import InFlight, Queued
from .lookahead import Lookahead
from .sharing import SharedGate, SharedSlots

#: how often one attempt may be sent again after critpath's own worker restarts killed
#: it (two hung services timing out together can kill a neighbour twice)
MAX_RESTART_RESENDS = 3


@dataclass(frozen=True, order=True)
class Timer:
    due: float
    seq: int  # ties in insertion order
    kind: str = field(compare=False)  # "timeout" | "retry" | "shared" (a busy shared pool: ask again)
    index: int = field(compare=False)
    attempt: int = field(compare=False)


class Dispatcher(Lookahead):
    def __init__(self, plan: Plan, runner, observers: list[Observer] | None = None,
                 max_concurrency: int | None = None, clock: Callable[[], float] = time.time,
                 secrets: Iterable[str] = (), shared: SharedSlots | None = None, lookahead: bool = True):
        """``secrets``: names of environment variables holding credentials (the config's
        ``secrets``); every job carries them, and every name a worker reports having masked
        (``Outcome.secret_names``), so that each worker masks their values from its first service.
        ``shared``: where the slots of the graph's pools are shared with other refreshes; each
        attempt of a pooled service then also holds one of them while it runs."""
        self.plan = plan
        self.graph = plan.graph
        self.runner = runner
        self.observers = list(observers or [])
        self.max_concurrency = max_concurrency or plan.max_concurrency
        self.clock = clock
        self._runs: list[ServiceRun] = [ServiceRun(n) for n in self.graph.names]  # by index
        self.runs: dict[str, ServiceRun] = {r.name: r for r in self._runs}  # the same records, by name
        self.events: list[Logged] = []
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._timers: list[Timer] = []
        self._seq = itertools.count()
        self._inflight: dict[int, InFlight] = {}
        self.first_dispatch: float | None = None
        self.last_completion: float | None = None
        self.cancelled: str | None = None
        self._cancel_requested: str | None = None
        self._retries_pending = 0
        self._secret_names: set[str] = set(secrets)
        self.shared = SharedGate(shared, plan.graph.pools, clock) if shared is not None else None
        self._ready_at: dict[int, float] = {}
        self._tokens = itertools.count(1)
        self._queued: dict[int, Queued] = {}  # service -> its attempt sent ahead, not yet started
        self._next: dict[int, int] = {}  # running or queued service -> the service queued behind it
        self.lookahead = lookahead and shared is None and callable(getattr(runner, "submit_behind", None))

    def cancel(self, reason: str = "cancelled") -> None:
        """Stop the run: nothing more starts, in-flight work is cancelled on the engine.
        Safe to call from any thread or a signal handler, also before ``run()``."""
        self._cancel_requested = self._cancel_requested or reason
        self._inbox.put((-1, 0, reason))  # wakes the loop if it is waiting

    # -- helpers -----------------------------------------------------------
    def _emit(self, kind: Event, i: int, **info) -> None:
        t = self.clock()
        run = self._runs[i]
        self.events.append(Logged(t, kind, run.name))
        if kind is Event.READY:
            self._ready_at[i] = t
        for obs in self.observers:
            obs.on_event(kind, run, t, **info)

    def _timer(self, delay: float, kind: str, i: int, attempt: int) -> None:
        heapq.heappush(self._timers, Timer(self.clock() + delay, next(self._seq), kind, i, attempt))

    # -- the loop ----------------------------------------------------------
    def run(self) -> dict[str, ServiceRun]:
        self._rank = self.plan.rank or self.plan.priority  # see planner: "Dispatch rank"
        q = self._q = ReadyQueue(self.graph, self._rank, self.max_concurrency)
        for heap in q.heaps.values():
            for _, i in sorted(heap):
                self._runs[i].state = "ready"
                self._emit(Event.READY, i)
        try:
            self._loop()
        finally:  # a crash of the loop must not keep other refreshes' slots until leases expire
            if self.shared is not None:
                self.shared.release_all()
        return self.runs

    def _loop(self) -> None:
        q = self._q
        while self.cancelled is None:
            if self._cancel_requested:
                self._cancel_all(self._cancel_requested)
                break
            self._dispatch()
            while self._queued and self._q.running < self.max_concurrency:
                self._steal()
            if self.lookahead and self._inflight and self._cancel_requested is None:
                self._look_ahead()
            if not self._inflight and not self._retries_pending and q.idle():
                break  # stale timeout timers of finished attempts must not keep the run alive
            timeout = max(0.0, self._timers[0].due - self.clock()) if self._timers else None
            # marks where the dispatcher goes idle: tests check that no ready service
            # could have had a free slot at any of these points (work conservation)
            self.events.append(Logged(self.clock(), Event.WAIT, ""))
            try:
                self._handle(*self._inbox.get(timeout=timeout))
                while True:  # see every outcome already here before choosing again
                    self._handle(*self._inbox.get_nowait())
            except queue.Empty:
                pass
            now = self.clock()
            while self._timers and self._timers[0].due <= now:
                timer = heapq.heappop(self._timers)
                if timer.kind == "timeout":
                    self._timeout(timer.index, timer.attempt)
                elif timer.kind == "retry":  # retry delay over: ready again
                    self._retries_pending -= 1
                    self._ready_again(timer.index)
                # "shared": nothing to do; the next _dispatch asks the busy pool again

    def _dispatch(self) -> None:
        # a submit that fails frees its slot at once: keep choosing until nothing can start
        gate = self._shared_gate if self.shared is not None else None
        while batch := self._q.pop_startable(gate):
            for i in batch:
                self._start(i)

    def _shared_gate(self, i: int) -> bool:
        answer = self.shared.ask(i, self._q.pool_of[i], self._ready_at.get(i, self.clock()))
        if answer is True or answer is False:
            return answer
        self._timer(answer - self.clock(), "shared", i, 0)  # ask that pool again then
        return False

    def _free(self, i: int) -> None:
        """``i``'s attempt no longer holds its slots: here, and shared with other refreshes."""
        self._q.release(i)
        if self.shared is not None:
            self.shared.release(i)

    def _job(self, i: int, attempt: int) -> Job:
        svc = self.graph.services[self.graph.names[i]]
        package = svc.call.split(".", 1)[0].split(":", 1)[0] if svc.call else None
        return Job(f"{svc.name}#{attempt}", svc.name, svc.call, dict(svc.params), svc.duration, svc.kind, package,
                   tuple(sorted(self._secret_names)))

    def _start(self, i: int) -> None:
        attempt = self._runs[i].attempts + 1
        self._began(i, InFlight(attempt, None, token=next(self._tokens)))
        if self._submit(i, attempt):
            self._arm_timeout(i, attempt)

    def _began(self, i: int, flight: InFlight) -> None:
        """``i``'s attempt holds its slot from now: dispatched, in the books."""
        run = self._runs[i]
        run.attempts = flight.attempt
        run.state = "running"
        run.dispatched = self.clock()
        self.first_dispatch = self.first_dispatch or run.dispatched
        self._emit(Event.DISPATCH, i, attempt=flight.attempt)
        self._inflight[i] = flight

    def _arm_timeout(self, i: int, attempt: int) -> None:
        timeout = self.graph.services[self._runs[i].name].timeout
        if timeout:
            self._timer(timeout, "timeout", i, attempt)

    def _done(self, i: int, token: int):
        def done(out):
            self._inbox.put((i, token, out))
        return done

    def _submit(self, i: int, attempt: int) -> bool:
        """Hand attempt ``attempt`` of ``i`` to the runner; False if the runner refused it."""
        flight = self._inflight[i]
        try:
            flight.handle = self.runner.submit(self._job(i, attempt), self._rank[i], self._done(i, flight.token))
        except Exception as exc:  # e.g. unpicklable params: fail this service, not the run
            flight.handle = None
            self._handle(i, flight.token, exc)
            return False
        return True

    def _handle(self, i: int, token: int, out) -> None:
        if i < 0:
            self._cancel_all(out)
            return
        if isinstance(out, Outcome) and out.secret_names:  # even a late one: later jobs mask them too
            self._secret_names.update(out.secret_names)
        if self.cancelled is not None:
            return  # reports after a cancel change nothing
        queued = self._queued.get(i)
        if queued is not None and queued.token == token:
            if not isinstance(out, Outcome):  # its slot was lost before it could start
                self._unqueue(i)
                return
            self._promote(i)  # it ran: the report of the one before it is late
        current = self._inflight.get(i)
        if current is None or current.token != token:
            return  # a late report from an attempt that already timed out
        attempt = current.attempt
        if isinstance(out, RestartedWorkerLost) and current.resends < MAX_RESTART_RESENDS:
            current.resends += 1  # our own restart killed it: the same attempt goes again
            self._submit(i, attempt)
            return
        del self._inflight[i]
        self._free(i)
        if i in self._next:  # its slot's next service started as it ended (or, if it was lost, take it back)
            if isinstance(out, Outcome):
                self._promote(self._next[i])
            else:
                self._take_back(self._next[i])
        run = self._runs[i]
        run.finished = self.clock()
        if isinstance(out, Outcome):
            ok, error, tb = out.ok, out.error, out.traceback
            run.start, run.end, run.worker = out.start, out.end, out.worker
            lost = False
            if self.lookahead and run.dispatched is not None:
                self._turnaround(current, run.finished - run.dispatched, out.end - out.start)
            limit = self.graph.services[run.name].timeout
            if ok and limit and out.end - out.start > limit:
                # it ran past its timeout, yet the timer never fired: a body that held the GIL on
                # threads kept this loop from running. Past its timeout is never completed
                ok, tb = False, None
                error = (f"TimeoutError: attempt {attempt} of {run.name!r} exceeded its timeout of {limit:g} s "
                         f"(it ran {out.end - out.start:.2f} s and held the interpreter meanwhile; on the threads "
                         "runner a timeout cannot interrupt such code: run it with --runner processes)")
        else:  # the engine, not the service, failed
            ok, error, tb = False, describe_exception(out)[0], None
            run.start, run.end, run.worker = run.dispatched, run.finished, None
            lost = isinstance(out, WorkerLost)
        run.history.append(Attempt(attempt, run.start, run.end, run.worker, ok, error, lost))
        if ok:
            run.state, run.error, run.traceback = "completed", None, None
            self.last_completion = run.finished
            self._emit(Event.COMPLETE, i, outcome=out)
            for j in self._q.completed(i):
                self._runs[j].state = "ready"
                self._emit(Event.READY, j)
        else:
            self._attempt_failed(i, error, tb, out if isinstance(out, Outcome) else None)

    def _cancel_all(self, reason: str) -> None:
        if self.cancelled is not None:
            return
        for j in sorted(self._queued):  # taken back; one that started already is cancelled below
            self._take_back(j)
        self.cancelled = reason
        self._timers.clear()
        self._retries_pending = 0
        for i, flight in sorted(self._inflight.items()):
            if flight.handle is not None:
                try:
                    self.runner.cancel(flight.handle)
                except Exception:  # best effort while shutting down
                    pass
            run = self._runs[i]
            run.state, run.finished = "cancelled", self.clock()
            run.error = f"cancelled while running: {reason}"
            self._emit(Event.CANCEL, i, reason=reason)
        self._inflight.clear()
        if self.shared is not None:
            self.shared.release_all()

    def _timeout(self, i: int, attempt: int) -> None:
        current = self._inflight.get(i)
        if current is None or current.attempt != attempt:
            return  # finished in time
        del self._inflight[i]
        self._free(i)
        if i in self._next:  # before the cancel: a worker restart would take it down too
            self._take_back(self._next[i])
        if current.handle is not None:
            self.runner.cancel(current.handle)
        run = self._runs[i]
        run.finished = self.clock()
        run.start, run.end, run.worker = run.dispatched, run.finished, None
        limit = self.graph.services[run.name].timeout
        error = f"TimeoutError: attempt {attempt} of {run.name!r} exceeded its timeout of {limit:g} s"
        run.history.append(Attempt(attempt, run.start, run.end, None, False, error, False))
        self._attempt_failed(i, error, None, None)

    def _attempt_failed(self, i: int, error: str | None, tb: str | None, outcome: Outcome | None) -> None:
        run = self._runs[i]
        svc = self.graph.services[run.name]
        run.error, run.traceback = error, tb
        # a lost worker is the infrastructure's failure, not the service's: it earns
        # one more attempt on a surviving worker even when the service has no retries
        # a module missing on the worker (``Outcome.permanent``) cannot appear on a retry
        permanent = outcome is not None and getattr(outcome, "permanent", False)
        if not permanent and run.attempts <= svc.retries + min(run.lost_worker, 1):
            run.state = "retrying"
            self._emit(Event.RETRY, i, outcome=outcome, delay=svc.retry_delay)
            if svc.retry_delay > 0:
                self._retries_pending += 1
                self._timer(svc.retry_delay, "retry", i, run.attempts)
            else:
                self._ready_again(i)
            return
        run.state = "failed"
        self.last_completion = run.finished
        self._emit(Event.FAIL, i, outcome=outcome)
        for j in self._q.failed(i):
            skipped = self._runs[j]
            skipped.state = "skipped"
            skipped.skipped_because = run.name
            self._emit(Event.SKIP, j, upstream=run.name)

    def _ready_again(self, i: int) -> None:
        self._runs[i].state = "ready"
        self._q.push(i)
        self._emit(Event.READY, i)
