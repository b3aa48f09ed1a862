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

Cancelling a running service restarts its worker process (the only way to stop a
body Dask cannot interrupt). Whatever else was on that worker, or was sent to it
before it came back, dies with it: that is the runner's own doing, not a lost
worker, so such a death is reported as ``RestartedWorkerLost`` and the dispatcher
decides what to do (it sends the job again). A job is "exposed" when it was live
while one of our restarts was under way; only exposed jobs that die with
``KilledWorker`` are reported so.
"""
from __future__ import annotations

import logging
import math
import os
import queue
import threading
import uuid
from contextlib import ExitStack

from distributed.diagnostics.plugin import WorkerPlugin

from .base import Done, Job, RestartedWorkerLost, WorkerLost, execute, probe, warm


class _IgnoreCtrlC(WorkerPlugin):
    """SIGINT is ignored in every worker process, restarted ones included."""

    idempotent = True

    def setup(self, worker) -> None:
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker's event loop: its main thread


class DaskRunner:
    name = "dask"

    def __init__(self, workers: int = 4, address: str | None = None):
        self.workers = workers
        self.address = address
        self.capacity = workers
        self.cores: float | None = None
        self._stack = ExitStack()
        self.client = None
        self._finished: queue.SimpleQueue = queue.SimpleQueue()
        #: future key -> the dispatcher's callback, while the future is live
        self._live: dict[str, Done] = {}
        self._lock = threading.Lock()  # submit, cancel and the gatherer touch the three below
        self._restarting = 0  # worker restarts of ours under way
        self._exposed: set[str] = set()  # keys live while a restart of ours was under way

    def __enter__(self):
        from distributed import Client, LocalCluster

        try:
            if self.address:
                probe(self.address, 8786)
                self.client = self._stack.enter_context(Client(self.address, timeout="30s"))
                info = self.client.scheduler_info(n_workers=-1)
                self.capacity = sum(w["nthreads"] for w in info["workers"].values()) or self.workers
                # Dask reports threads, not cores: a worker usually runs one thread per core it has
                self.cores = float(self.capacity)
            else:
                # Prefect's logging config lets distributed's INFO chatter reach the console
                lg = logging.getLogger("distributed")
                if lg.getEffectiveLevel() < logging.WARNING:
                    lg.setLevel(logging.WARNING)
                # a dying worker must surface as a failed attempt that the dispatcher
                # retries and reports, not be re-run silently by the scheduler
                import dask

                self._stack.enter_context(dask.config.set({"distributed.scheduler.allowed-failures": 0}))
                # with allowed-failures 0 the scheduler logs every worker death, ours too (a
                # cancel restarts a worker), as an ERROR, and a restart still under way when the
                # cluster closes as a traceback; critpath reports each lost worker itself.
                # Registered before the cluster, so the level comes back after it has closed
                sched = logging.getLogger("distributed.scheduler")
                self._stack.callback(sched.setLevel, sched.level)
                sched.setLevel(logging.CRITICAL)
                procs = max(1, min(self.workers, os.cpu_count() or 1))
                cluster = self._stack.enter_context(LocalCluster(
                    n_workers=procs, threads_per_worker=math.ceil(self.workers / procs),
                    processes=True, dashboard_address=None, silence_logs=logging.ERROR))
                self.client = self._stack.enter_context(Client(cluster))
                # critpath handles Ctrl-C for the whole run. A terminal's Ctrl-C also reaches
                # the worker processes, which are in its process group; a worker that the
                # nanny starts again after a cancel must not die of it with a traceback
                self.client.register_plugin(_IgnoreCtrlC(), name="critpath-ignore-ctrl-c")
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
            ok_ids = {id(f) for f in ok}  # a status read once: it can change meanwhile
            try:
                results = self.client.gather(ok) if ok else []
            except BaseException:  # a result vanished with its worker: fetch one by one below
                results = None
            for i, f in enumerate(ok):
                done = self._take(f.key)
                if results is not None:
                    done(results[i])
                else:
                    try:
                        done(f.result())
                    except BaseException as exc:
                        done(exc)
            for f in batch:
                if id(f) not in ok_ids:  # error, cancelled, lost
                    try:
                        exc = f.exception() or RuntimeError(f"dask future {f.key} ended as {f.status}")
                    except BaseException as err:
                        exc = err
                    exposed = self._was_exposed(f.key)
                    if type(exc).__name__ == "KilledWorker":
                        kind = RestartedWorkerLost if exposed else WorkerLost
                        exc = kind(f"dask worker died while running {f.key}: {exc}")
                    self._take(f.key)(exc)
            if more is None:
                return

    def _was_exposed(self, key: str) -> bool:
        with self._lock:
            return key in self._exposed

    def _take(self, key: str) -> Done:
        """The callback of a future that has ended, no longer live."""
        with self._lock:
            self._exposed.discard(key)
            return self._live.pop(key)

    def submit(self, job: Job, priority: float, done: Done):
        key = f"{job.key}-{uuid.uuid4().hex[:8]}"
        with self._lock:
            self._live[key] = done
            if self._restarting:
                self._exposed.add(key)
        fut = self.client.submit(execute, job, key=key, pure=False, priority=priority, retries=0)
        fut.add_done_callback(self._finished.put)
        return fut

    def cancel(self, handle) -> None:
        """Stop a queued or running service. Dask cannot interrupt a running task's
        thread, so the worker process running it is restarted by its nanny (only in a
        cluster critpath started: a shared cluster's workers are not ours to restart).
        Other services on that worker are reported as killed by our restart (see the
        module docstring)."""
        fut = handle
        running_on = []
        if not self.address:
            try:
                running_on = [a for a, keys in self.client.processing().items() if fut.key in keys]
            except Exception:  # the cluster may be shutting down
                pass
        if running_on:
            with self._lock:  # from now until the restart is over, every live job is exposed
                self._restarting += 1
                self._exposed.update(self._live)
        fut.cancel()
        if running_on:
            threading.Thread(target=self._restart, args=(running_on,), daemon=True,
                             name="critpath-dask-restart").start()

    def _restart(self, addresses) -> None:
        try:
            self.client.restart_workers(addresses, timeout=60, raise_for_error=False)
        except Exception:  # best effort; the dispatcher has moved on
            pass
        finally:
            with self._lock:
                self._restarting -= 1
