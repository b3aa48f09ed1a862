"""Threads in the flow's process: no start-up cost, no pickling; for I/O-bound
services (warehouse queries, HTTP) and tests.

Each job runs on a daemon thread of its own (the dispatcher already caps how
many run at once). A thread cannot be interrupted, so an attempt the dispatcher
abandoned at its timeout keeps running until its body returns; as a daemon it
neither takes a slot from other services nor keeps the process from exiting,
which a ``ThreadPoolExecutor`` thread would (they are joined at exit).
"""
from __future__ import annotations

import threading

from .base import Done, Job, execute


class ThreadRunner:
    name = "threads"

    def __init__(self, workers: int = 8, address: str | None = None):
        if address:
            raise ValueError("--address does not apply to --runner threads; use --runner dask or ray")
        self.capacity = workers
        self.cores = None  # this machine's
        self.threads_per_process = (workers,)  # every service in this one process: one interpreter lock
        self._count = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None  # abandoned (timed-out) attempts are daemon threads: nothing to wait for

    def submit(self, job: Job, priority: float, done: Done):
        def work():
            try:
                out = execute(job)
            except BaseException as exc:  # execute catches the body's; this is ours
                out = exc
            done(out)

        self._count += 1
        t = threading.Thread(target=work, name=f"critpath_{self._count % (self.capacity * 2)}", daemon=True)
        t.start()
        return t

    def cancel(self, handle) -> None:
        pass  # a Python thread cannot be stopped; the dispatcher has already freed its slot
