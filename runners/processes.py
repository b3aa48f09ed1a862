"""Local worker processes (``concurrent.futures.ProcessPoolExecutor``): CPU-bound
services on one machine without a cluster. Processes come from ``forkserver`` so
that the flow process's threads (Prefect's event and log workers) are not forked.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor, wait

from .base import Done, Job, execute, warm


class ProcessRunner:
    name = "processes"

    def __init__(self, workers: int = 4, address: str | None = None):
        if address:
            raise ValueError("--address does not apply to --runner processes; use --runner dask or ray")
        self.capacity = workers
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self):
        self._pool = ProcessPoolExecutor(self.capacity, mp_context=multiprocessing.get_context("forkserver"))
        # start every worker before the clock starts, not on the first services
        wait([self._pool.submit(warm, i) for i in range(self.capacity)])
        return self

    def __exit__(self, *exc):
        self._pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, job: Job, priority: float, done: Done) -> Future:
        fut = self._pool.submit(execute, job)
        fut.add_done_callback(lambda f: done(f.exception() or f.result()))
        return fut

    def cancel(self, handle: Future) -> None:
        handle.cancel()
