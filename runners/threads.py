"""Threads in the flow's process: no start-up cost, no pickling; for I/O-bound
services (warehouse queries, HTTP) and tests.

The pool has spare threads beyond ``capacity``: a thread cannot be interrupted,
so an attempt the dispatcher abandoned at its timeout keeps its thread until the
body returns, and the spare threads keep such stragglers from taking slots the
dispatcher has already given to other services.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

from .base import Done, Job, execute


class ThreadRunner:
    name = "threads"

    def __init__(self, workers: int = 8, address: str | None = None):
        if address:
            raise ValueError("--address does not apply to --runner threads; use --runner dask or ray")
        self.capacity = workers
        self._pool: ThreadPoolExecutor | None = None

    def __enter__(self):
        self._pool = ThreadPoolExecutor(self.capacity * 2, thread_name_prefix="critpath")
        return self

    def __exit__(self, *exc):
        # don't wait for abandoned (timed-out) attempts: their threads die with the process
        self._pool.shutdown(wait=False, cancel_futures=True)

    def submit(self, job: Job, priority: float, done: Done) -> Future:
        fut = self._pool.submit(execute, job)
        fut.add_done_callback(lambda f: done(f.exception() or f.result()))
        return fut

    def cancel(self, handle: Future) -> None:
        handle.cancel()  # only helps if it has not started; threads cannot be killed
