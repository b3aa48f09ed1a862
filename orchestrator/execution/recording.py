"""The dispatcher observer that writes every attempt to the duration history as it ends.

It runs on the dispatcher's thread and commits one SQLite row per attempt (see
``inputs.history``), so a crash loses no attempt that ended. Observers run before the
loop chooses again, so the commit is on the critical path: the bench's per-hop
overhead measures it.
"""
from __future__ import annotations

from typing import Callable, Mapping

from ..inputs.history import AttemptRow, History, MachineLoad
from .events import Event, ServiceRun

_ENDS = {Event.COMPLETE, Event.RETRY, Event.FAIL, Event.CANCEL}


#: where a service has a worker process to itself, that process's CPU time is the service's, threads
#: its libraries start included; where services share a process, its thread's CPU plus its share of
#: the process's other threads' (``runners.cpu_share``), or its thread's alone where that is unknown
OWN_PROCESS = ("processes", "ray")


def cpu_seconds(runner: str, outcome) -> float | None:
    if runner in OWN_PROCESS:
        return getattr(outcome, "process_cpu_s", None)
    whole = getattr(outcome, "whole_cpu_s", None)
    return whole if whole is not None else getattr(outcome, "thread_cpu_s", None)


def gil_seconds(runner: str, outcome) -> float | None:
    """Where services share a process (threads, a Dask worker's threads), the time a service held
    that process's interpreter lock: its own thread's CPU time (Python code runs only holding it)
    less what that thread ran natively without it (DuckDB, Arrow: ``runners.lock_probe``)."""
    if runner in OWN_PROCESS:
        return None
    thread = getattr(outcome, "thread_cpu_s", None)
    native = getattr(outcome, "native_cpu_s", None)
    return thread if thread is None or native is None else max(0.0, thread - native)


def native_seconds(runner: str, outcome) -> float | None:
    """Where services share a process: its thread's CPU that ran without the lock (``gil_seconds``
    is the rest)."""
    return None if runner in OWN_PROCESS else getattr(outcome, "native_cpu_s", None)


def process_of(worker: str | None) -> str | None:
    """``host:pid`` of the worker process that ran it (a worker is named ``host:pid/thread``): the
    attempts of one run recorded with the same process shared its interpreter lock."""
    return worker.split("/", 1)[0] if worker else None


def outcome_of(kind: Event, run: ServiceRun) -> str:
    if kind == Event.COMPLETE:
        return "completed"
    if kind == Event.CANCEL:
        return "cancelled"
    last = run.history[-1] if run.history else None
    if last is not None and last.lost:
        return "lost"
    if (run.error or "").startswith("TimeoutError: attempt"):
        return "timeout"
    return "failed"


class HistoryObserver:
    """``busy``: where the services run on this machine, a reader of its busy CPU seconds
    (``inputs.cores.busy_reader``): read at the first dispatch and at every attempt's end, for the
    run's ``MachineLoad`` (the machine model's background load). About 30 us a reading."""

    def __init__(self, history: History, run_id: str, runner: str, cores: float | None = None,
                 max_concurrency: int | None = None, pools: Mapping[str, int] | None = None,
                 busy: Callable[[], float] | None = None):
        self.history = history
        self.run_id, self.runner, self.cores = run_id, runner, cores
        self.max_concurrency, self.pools = max_concurrency, dict(pools or {})
        self.flow_run_id: str | None = None
        self.services: set[str] = set()
        self.busy = busy
        self._first: tuple[float, float] | None = None  # (t, busy) at the first dispatch
        self._last: tuple[float, float] | None = None  # (t, busy) at the latest end

    def on_event(self, kind: Event, run: ServiceRun, t: float, **info) -> None:
        if self.busy is not None and kind == Event.DISPATCH and self._first is None:
            self._first = (t, self.busy())
        if kind not in _ENDS:
            return
        if self._first is not None:
            self._last = (t, self.busy())
        outcome = info.get("outcome")
        last = run.history[-1] if run.history and kind != Event.CANCEL else None
        self.history.record(AttemptRow(
            service=run.name, run_id=self.run_id, runner=self.runner, attempt=run.attempts,
            outcome=outcome_of(kind, run),
            start=last.start if last else run.dispatched, end=last.end if last else run.finished,
            dispatched=run.dispatched, finished=run.finished if kind != Event.CANCEL else t,
            cpu_s=cpu_seconds(self.runner, outcome),
            gil_s=gil_seconds(self.runner, outcome), cpu_wait_s=getattr(outcome, "cpu_wait_s", None),
            process=process_of(last.worker if last else None), native_s=native_seconds(self.runner, outcome),
            flow_run_id=self.flow_run_id, cores=self.cores, max_concurrency=self.max_concurrency,
            pools=self.pools))
        self.services.add(run.name)

    def close(self) -> None:
        """The run's machine load, then keep only the last runs of the services this run touched."""
        if self._first is not None and self._last is not None and self._last[0] > self._first[0]:
            self.history.record_load(MachineLoad(self.run_id, self.runner, self._first[0], self._last[0],
                                                 self._last[1] - self._first[1]))
        if self.services:
            self.history.prune(self.services)
