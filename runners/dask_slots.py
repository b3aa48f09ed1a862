"""The Dask runner's slots: one long-lived actor per slot, receiving jobs by method call.

Why: a task goes client -> scheduler -> worker -> scheduler -> client, and Dask batches what
each of them sends (every 2-10 ms): 11-16 ms a hop on a chain here, where a call to an actor
goes from the client to the worker holding it and back: 1-3 ms (critpath's local cluster
talks to its workers directly; a client that does not, as Dask's default has it for an
existing scheduler, goes through the scheduler, still without the batching). A fan-out of
no-op jobs, eight in flight, ran 650-1,050 a second that way against about 200 as tasks.

How: each worker gets as many slots as it has threads (``bootstrap.DaskSlot``, sent by value,
so it runs where ``runners`` is missing too, with shipped code or without). ``take`` hands
the dispatcher's submit an idle slot and ``send`` gives it the job; the call runs on the
client's event loop and, when the answer comes, gives the slot back before the dispatcher
hears of it. The dispatcher still chooses what runs next; the runner chooses where, on the
worker process running the fewest jobs. With no idle slot (one being replaced) it sends a
task instead, as before. ``send_behind`` (the dispatcher's lookahead) sends a job to a busy
slot, where it waits in line on the slot's thread and starts the moment the one before it
ends: no round trip between the two. ``recall`` takes it back if it has not started.

Lost slots: a call that cannot reach its worker (it died, or critpath restarted it to stop a
cancelled service) is a ``WorkerLost`` (``RestartedWorkerLost`` when the restart was ours,
``exposed``), and every slot of that worker is dropped. Missing slots are started again in
the background (``refill``), on the workers the scheduler lists then, one per thread, and
warmed before they take a job.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .base import Done, Job, RestartedWorkerLost, WorkerLost, first_line, job_fields, new_tag
from .slotbook import free_behind, off_slot

#: at most one refill attempt per this many seconds while slots are missing (a worker that
#: is gone for good must not cost every submit a round trip to the scheduler)
REFILL_EVERY_S = 1.0
#: how long the dispatcher waits for a worker to say whether a queued job was taken back
RECALL_WAIT_S = 5.0


@dataclass(eq=False)
class Slot:
    """One slot: the actor on ``worker`` (``future`` keeps it alive on the cluster)."""

    worker: str
    future: Any
    gone: bool = False  # its worker died or was restarted, or its call failed: never used again
    #: the calls sent here and not ended, in order: the one running, and those queued behind it (lookahead)
    calls: list = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.future.key


@dataclass(eq=False)
class Call:
    """A job sent to a slot: the runner's handle for ``cancel``."""

    slot: Slot
    key: str
    #: names this call on the actor (``recall``): unique across refreshes, where job keys repeat
    tag: str = field(default_factory=new_tag)
    finished: bool = False
    exposed: bool = False  # critpath restarted its worker while it ran
    recalled: bool = False  # taken back before it started: its answer is nobody's
    after: str | None = None  # the tag of the call it was sent behind (``send_behind``): it runs after that one


@dataclass(eq=False)
class Slots:
    client: Any
    cls: Any  # bootstrap.DaskSlot, by value
    shipped: tuple | None  # (version, modules) of the shipped code; None: as installed
    timeout: float
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _slots: list[Slot] = field(default_factory=list)
    _idle: list[Slot] = field(default_factory=list)  # the most recently freed last
    _calls: set[Call] = field(default_factory=set)  # in flight
    _held: set[str] = field(default_factory=set)  # workers critpath is restarting: no slot there yet
    _capacity: int = 0
    _refilling: bool = False
    _last_refill: float = 0.0
    _closed: bool = False

    def start(self) -> None:
        """A warm slot per worker thread; TimeoutError when the workers do not take them in time."""
        wanted = self._wanted()
        fresh = self._start(wanted)
        if len(fresh) < len(wanted):
            raise TimeoutError(f"{len(wanted) - len(fresh)} of {len(wanted)} slots did not start")
        with self._lock:
            self._slots, self._idle, self._capacity = list(fresh), list(fresh), len(fresh)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._idle.clear()

    def take(self) -> Slot | None:
        """An idle slot on the worker running the fewest jobs (the services of one worker
        process share its interpreter lock; the scheduler would have spread tasks so too),
        the most recently freed of them; None when every slot is busy."""
        with self._lock:
            slot = None
            if self._idle:
                busy = Counter(c.slot.worker for c in self._calls)
                best = min(range(len(self._idle)), key=lambda i: (busy[self._idle[i].worker], -i))
                slot = self._idle.pop(best)
            short = len(self._slots) < self._capacity
        if short:
            self.refill()
        return slot

    def send(self, slot: Slot, job: Job, done: Done) -> Call:
        try:
            return self._call(slot, job, done)
        except BaseException:
            with self._lock:
                self._idle.append(slot)
            raise

    def send_behind(self, behind: Call, job: Job, done: Done) -> Call | None:
        """Send ``job`` to the slot of ``behind``, to start there when that ends; None when it cannot
        be (``behind`` ended, its slot is gone, it is not the last in line there, or the line is full)."""
        with self._lock:
            slot = behind.slot
            if self._closed or not free_behind(behind):
                return None
            call = Call(slot, job.key, after=behind.tag)
            slot.calls.append(call)  # now, so that no other job is queued there meanwhile
        try:
            return self._call(slot, job, done, call)
        except BaseException:
            with self._lock:
                slot.calls.remove(call)
            raise

    def recall(self, call: Call) -> bool:
        """Take queued ``call`` back from its slot: True if it never started (its ``done`` is never
        called), False if it started or ended (it reports as usual)."""
        with self._lock:
            if call.finished or call.slot.gone:  # a lost slot's calls report their loss themselves
                return False
        try:
            back = self.client.sync(self._recall, call, callback_timeout=min(self.timeout, RECALL_WAIT_S))
        except Exception:  # its worker cannot be reached: the call reports that itself
            return False
        if back:
            with self._lock:
                call.recalled = call.finished = True
                self._calls.discard(call)
                off_slot(call, self._idle)
        return bool(back)

    async def _recall(self, call: Call):
        answer = await self._rpc(call.slot).actor_execute(actor=call.slot.key, function="recall",
                                                          args=[call.tag], kwargs={})
        return answer.get("status") == "OK" and answer.get("result") is True

    def _call(self, slot: Slot, job: Job, done: Done, call: Call | None = None) -> Call:
        from distributed.protocol.pickle import dumps

        # pickled here, so that a job that cannot be sent fails its service now, as a task would
        payload = dumps(job_fields(job))
        with self._lock:
            if call is None:
                call = Call(slot, job.key)
                slot.calls.append(call)
            self._calls.add(call)
        self.client.loop.add_callback(self._run, call, payload, done)
        return call

    async def _run(self, call: Call, payload: bytes, done: Done) -> None:
        try:
            answer = await self._send(call.slot, payload, call.tag, call.after)
        except Exception as exc:  # the worker cannot be reached: it died, or we restarted it
            if not call.recalled:
                done(self._lost(call, exc))
            return
        ok = answer.get("status") == "OK"
        if call.recalled or (ok and answer["result"] is None):  # taken back: ``recall`` tidies up
            return
        self._ended(call, ok)  # the slot is free before the dispatcher hears of it
        done(answer["result"] if ok else _error(answer))

    def _rpc(self, slot: Slot):
        from distributed.actor import ProxyRPC

        # as distributed's own Actor proxies call: straight to the worker, or through the scheduler
        return (self.client.rpc(slot.worker) if self.client.direct_to_workers
                else ProxyRPC(self.client.scheduler, slot.worker))

    def _send(self, slot: Slot, payload: bytes, key: str | None = None, after: str | None = None):
        from distributed.protocol import to_serialize

        kwargs = {"key": key} if key else {}
        if after:
            kwargs["after"] = after
        return self._rpc(slot).actor_execute(actor=slot.key, function="run",
                                             args=[to_serialize(payload), to_serialize(self.shipped)], kwargs=kwargs)

    def _ended(self, call: Call, ok: bool) -> None:
        with self._lock:
            call.finished = True
            self._calls.discard(call)
            if ok:
                off_slot(call, self._idle)
            elif not call.slot.gone:  # an actor whose call failed is not trusted again (a gone slot's books
                self._drop([call.slot])  # are never read again)

    def _lost(self, call: Call, exc: BaseException) -> WorkerLost:
        with self._lock:
            call.finished = True
            self._calls.discard(call)
            worker = call.slot.worker
            self._drop([s for s in self._slots if s.worker == worker])
            kind = RestartedWorkerLost if call.exposed else WorkerLost
        self.refill()
        return kind(f"dask worker {worker} died while running {call.key}: {type(exc).__name__}: {first_line(exc)}")

    def _drop(self, slots: list[Slot]) -> None:
        """(Under the lock.)"""
        for s in slots:
            s.gone = True
        self._slots = [s for s in self._slots if not s.gone]
        self._idle = [s for s in self._idle if not s.gone]

    def cancel(self, call: Call, restart: bool) -> str | None:
        """Stop using the slot running ``call``. ``restart``: the runner restarts its worker
        (the only way to stop a body Dask cannot interrupt); every slot there goes, and the
        other calls in flight there are exposed. Returns the worker to restart, or None."""
        with self._lock:
            if call.finished or call.slot.gone:
                return None  # it ended meanwhile: its slot may already run the next job
            worker = call.slot.worker
            if not restart:  # a shared cluster's worker: its thread stays busy until the body ends
                self._drop([call.slot])
                return None
            self._held.add(worker)
            self._drop([s for s in self._slots if s.worker == worker])
            for c in self._calls:
                if c is not call and c.slot.worker == worker:
                    c.exposed = True
        return worker

    def restarted(self, workers) -> None:
        """The restart of ``workers`` is over: slots may go there again."""
        with self._lock:
            self._held.difference_update(workers)
        self.refill(force=True)

    # -- refill ---------------------------------------------------------------------------------

    def refill(self, force: bool = False) -> None:
        """Start the missing slots, on a thread of its own (never on the dispatcher's)."""
        with self._lock:
            now = time.monotonic()
            if self._refilling or self._closed or (not force and now - self._last_refill < REFILL_EVERY_S):
                return
            self._refilling, self._last_refill = True, now
        threading.Thread(target=self._refill, name="critpath-dask-slots", daemon=True).start()

    def _refill(self) -> None:
        try:
            wanted = self._wanted()
            fresh = self._start(wanted) if wanted else []
            with self._lock:
                if not self._closed:
                    self._slots.extend(fresh)
                    self._idle[:0] = fresh  # taken last: a slot that has run jobs first
        except Exception:  # the cluster is closing, or a worker went away meanwhile: the next loss retries
            pass
        finally:
            with self._lock:
                self._refilling = False

    def _wanted(self) -> list[str]:
        """The worker of each missing slot: per worker, its threads less its live slots."""
        workers = self.client.scheduler_info(n_workers=-1)["workers"]
        with self._lock:
            live = Counter(s.worker for s in self._slots)
            held = set(self._held)
        return [addr for addr, w in sorted(workers.items()) if addr not in held
                for _ in range(max(0, w["nthreads"] - live[addr]))]

    def _start(self, workers: list[str]) -> list[Slot]:
        """Slots on ``workers``, each warmed by a no-op job (a worker imports ``runners`` then,
        not in the first service); those that did not start in time are left out."""
        from distributed import wait

        futures = [self.client.submit(self.cls, actor=True, workers=[w], allow_other_workers=False, pure=False)
                   for w in workers]
        try:
            wait(futures, timeout=self.timeout)
        except Exception:  # distributed's TimeoutError: keep those that did start
            pass
        slots = [Slot(w, f) for w, f in zip(workers, futures, strict=True) if f.status == "finished"]
        for f in futures:
            if f.status != "finished":
                f.cancel()
        from distributed.protocol.pickle import dumps

        warm = dumps({"key": "warm#0", "name": "warm", "duration": 0.0})

        async def warm_all():
            return await asyncio.gather(*(self._send(s, warm) for s in slots), return_exceptions=True)

        answers = self.client.sync(warm_all, callback_timeout=self.timeout) if slots else []
        return [s for s, a in zip(slots, answers, strict=True) if isinstance(a, dict) and a.get("status") == "OK"]


def _error(answer: dict) -> BaseException:
    exc = answer.get("exception")
    return exc if isinstance(exc, BaseException) else RuntimeError(f"dask actor call failed: {answer!r}")
