"""Dask: a ``distributed.LocalCluster`` of worker processes, or an existing
scheduler at ``address``.

Only the service body crosses to Dask (``client.submit(execute, job)``), with the
dispatcher's priority passed on as Dask's ``priority=`` so that any queueing on
the cluster side honours the same order. Completion comes back through the
future's done-callback: no polling.
"""
from __future__ import annotations

import logging
import math
import os
import uuid
from contextlib import ExitStack

from .base import Done, Job, execute, warm


class DaskRunner:
    name = "dask"

    def __init__(self, workers: int = 4, address: str | None = None):
        self.workers = workers
        self.address = address
        self.capacity = workers
        self._stack = ExitStack()
        self.client = None

    def __enter__(self):
        from distributed import Client, LocalCluster

        try:
            if self.address:
                self.client = self._stack.enter_context(Client(self.address, timeout="30s"))
                info = self.client.scheduler_info(n_workers=-1)
                self.capacity = sum(w["nthreads"] for w in info["workers"].values()) or self.workers
            else:
                procs = max(1, min(self.workers, os.cpu_count() or 1))
                cluster = self._stack.enter_context(LocalCluster(
                    n_workers=procs, threads_per_worker=math.ceil(self.workers / procs),
                    processes=True, dashboard_address=None, silence_logs=logging.ERROR))
                self.client = self._stack.enter_context(Client(cluster))
            self.client.gather([self.client.submit(warm, i, pure=False) for i in range(self.capacity)])
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc):
        self._stack.close()

    def submit(self, job: Job, priority: float, done: Done):
        fut = self.client.submit(execute, job, key=f"{job.key}-{uuid.uuid4().hex[:8]}", pure=False,
                                 priority=priority, retries=0)

        def callback(f):
            try:
                done(f.result())
            except BaseException as exc:  # lost worker, cancelled, unpicklable ...
                done(exc)

        fut.add_done_callback(callback)
        return fut

    def cancel(self, handle) -> None:
        handle.cancel()
