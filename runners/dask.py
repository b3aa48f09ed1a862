"""Dask: a ``distributed.LocalCluster`` of worker processes, or an existing
scheduler at ``address``.

Only the service body crosses to Dask (``client.submit(execute, job)``), with the
dispatcher's priority passed on as Dask's ``priority=`` so that any queueing on
the cluster side honours the same order.

Completion: a future's done-callback hands it to a gatherer thread, which fetches
the results of every future finished so far with one ``client.gather`` (one round
trip for the batch). Fetching each result inside Dask's single callback thread
costs a round trip per service and capped fan-out near 80 services a second.
No polling: the gatherer blocks on its queue.
"""
from __future__ import annotations

import logging
import math
import os
import queue
import threading
import uuid
from contextlib import ExitStack

from .base import Done, Job, WorkerLost, execute, probe, warm


class DaskRunner:
    name = "dask"

    def __init__(self, workers: int = 4, address: str | None = None):
        self.workers = workers
        self.address = address
        self.capacity = workers
        self._stack = ExitStack()
        self.client = None
        self._finished: queue.SimpleQueue = queue.SimpleQueue()
        self._callbacks: dict[str, object] = {}  # future key -> done

    def __enter__(self):
        from distributed import Client, LocalCluster

        try:
            if self.address:
                probe(self.address, 8786)
                self.client = self._stack.enter_context(Client(self.address, timeout="30s"))
                info = self.client.scheduler_info(n_workers=-1)
                self.capacity = sum(w["nthreads"] for w in info["workers"].values()) or self.workers
            else:
                # Prefect's logging config lets distributed's INFO chatter reach the console
                lg = logging.getLogger("distributed")
                if lg.getEffectiveLevel() < logging.WARNING:
                    lg.setLevel(logging.WARNING)
                # a dying worker must surface as a failed attempt that the dispatcher
                # retries and reports, not be re-run silently by the scheduler
                import dask

                self._stack.enter_context(dask.config.set({"distributed.scheduler.allowed-failures": 0}))
                procs = max(1, min(self.workers, os.cpu_count() or 1))
                cluster = self._stack.enter_context(LocalCluster(
                    n_workers=procs, threads_per_worker=math.ceil(self.workers / procs),
                    processes=True, dashboard_address=None, silence_logs=logging.ERROR))
                self.client = self._stack.enter_context(Client(cluster))
            self.client.gather([self.client.submit(warm, i, pure=False) for i in range(self.capacity)])
            gatherer = threading.Thread(target=self._gather_loop, name="critpath-dask-gather", daemon=True)
            gatherer.start()
            self._stack.callback(gatherer.join)
            self._stack.callback(self._finished.put, None)  # runs first: stops the gatherer
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc):
        self._stack.close()

    def _gather_loop(self) -> None:
        while (fut := self._finished.get()) is not None:
            batch = [fut]
            try:
                while (more := self._finished.get_nowait()) is not None:
                    batch.append(more)
            except queue.Empty:
                more = fut
            ok = [f for f in batch if f.status == "finished"]
            try:
                results = self.client.gather(ok) if ok else []
            except BaseException:  # a result vanished with its worker: fetch one by one below
                results = None
            for i, f in enumerate(ok):
                done = self._callbacks.pop(f.key)
                if results is not None:
                    done(results[i])
                else:
                    try:
                        done(f.result())
                    except BaseException as exc:
                        done(exc)
            for f in batch:
                if f.status != "finished":  # error, cancelled, lost
                    done = self._callbacks.pop(f.key)
                    try:
                        exc = f.exception() or RuntimeError(f"dask future {f.key} ended as {f.status}")
                    except BaseException as err:
                        exc = err
                    if type(exc).__name__ == "KilledWorker":
                        exc = WorkerLost(f"dask worker died while running {f.key}: {exc}")
                    done(exc)
            if more is None:
                return

    def submit(self, job: Job, priority: float, done: Done):
        key = f"{job.key}-{uuid.uuid4().hex[:8]}"
        self._callbacks[key] = done
        fut = self.client.submit(execute, job, key=key, pure=False, priority=priority, retries=0)
        fut.add_done_callback(self._finished.put)
        return fut

    def cancel(self, handle) -> None:
        """Stop a queued or running service. Dask cannot interrupt a running task's
        thread, so the worker process running it is restarted by its nanny (only in a
        cluster critpath started: a shared cluster's workers are not ours to restart).
        Other services on that worker come back as lost workers and are retried."""
        running_on = []
        if not self.address:
            try:
                running_on = [a for a, keys in self.client.processing().items() if handle.key in keys]
            except Exception:  # noqa: BLE001 - the cluster may be shutting down
                pass
        handle.cancel()
        if running_on:
            threading.Thread(target=self._restart, args=(running_on,), daemon=True,
                             name="critpath-dask-restart").start()

    def _restart(self, addresses) -> None:
        try:
            self.client.restart_workers(addresses, timeout=60, raise_for_error=False)
        except Exception:  # noqa: BLE001 - best effort; the dispatcher has moved on
            pass
