"""Local worker processes: CPU-bound services on one machine, without a cluster.

Each worker is a fresh ``python -m runners.procworker`` talking over two pipes,
and runs one job at a time; a reader thread per worker turns each outcome into
the ``done`` callback (no polling). Owning the processes, rather than using
``ProcessPoolExecutor``, buys two things:
  * a hung service can be stopped: ``cancel`` kills exactly its worker and
    starts a replacement, and the rest of the refresh goes on;
  * a worker that dies (killed, out of memory) is reported as a lost worker for
    the dispatcher to retry, and replaced; the pool never breaks as a whole.
The parent's ``__main__`` is never re-imported in a worker.
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass, field

from .base import Done, Job, WorkerLost
from .procworker import read_frame, write_frame


@dataclass(eq=False)
class _Worker:
    proc: subprocess.Popen
    jobs: object  # writable pipe
    job: Job | None = None
    done: Done | None = None
    cancelled: set = field(default_factory=set)


class ProcessRunner:
    name = "processes"

    def __init__(self, workers: int = 4, address: str | None = None):
        if address:
            raise ValueError("--address does not apply to --runner processes; use --runner dask or ray")
        self.capacity = workers
        self._lock = threading.Lock()
        self._idle: deque[_Worker] = deque()
        self._queue: deque[tuple[Job, Done, bytes]] = deque()  # only while a replacement starts
        self._all: set[_Worker] = set()
        self._closing = False

    # -- lifetime --------------------------------------------------------------
    def __enter__(self):
        for _ in range(self.capacity):
            self._idle.append(self._start())
        return self

    def __exit__(self, *exc):
        with self._lock:
            self._closing = True
            workers = list(self._all)
        for w in workers:
            try:
                w.jobs.close()  # EOF: an idle worker exits by itself
            except OSError:
                pass
        for w in workers:
            try:
                w.proc.wait(5 if w.job is None else 0.1)
            except subprocess.TimeoutExpired:
                w.proc.kill()  # still busy (an abandoned attempt): don't wait for it
                w.proc.wait()

    def _env(self) -> dict:
        # the worker imports services from the same folders as this process
        own = [p for p in sys.path if p and os.path.isdir(p)]
        paths = dict.fromkeys([os.getcwd(), *own])
        return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}

    def _start(self) -> _Worker:
        job_r, job_w = os.pipe()
        out_r, out_w = os.pipe()
        proc = subprocess.Popen([sys.executable, "-m", "runners.procworker", str(job_r), str(out_w)],
                                pass_fds=(job_r, out_w), env=self._env(), stdin=subprocess.DEVNULL)
        os.close(job_r)
        os.close(out_w)
        w = _Worker(proc, os.fdopen(job_w, "wb"))
        self._all.add(w)
        threading.Thread(target=self._read, args=(w, os.fdopen(out_r, "rb")), daemon=True,
                         name=f"critpath-proc-{proc.pid}").start()
        return w

    # -- work ----------------------------------------------------------------------
    def submit(self, job: Job, priority: float, done: Done):
        # pickled before a worker is taken: an unpicklable job raises here and costs no worker
        frame = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            if not self._idle:  # a replacement for a killed worker is still starting
                self._queue.append((job, done, frame))
                return job.key
            w = self._idle.popleft()
            self._send(w, job, done, frame)
        return job.key

    def _send(self, w: _Worker, job: Job, done: Done, frame: bytes) -> None:
        w.job, w.done = job, done
        try:
            write_frame(w.jobs, frame)
        except (BrokenPipeError, OSError):
            pass  # the reader thread sees the worker die and reports it lost

    def _read(self, w: _Worker, outcomes) -> None:
        with outcomes:
            while (frame := read_frame(outcomes)) is not None:
                outcome = pickle.loads(frame)
                with self._lock:
                    done, w.job, w.done = w.done, None, None
                    self._next(w)
                if done is not None:
                    done(outcome)
        # EOF: the worker exited (killed by cancel, or died)
        w.proc.wait()
        with self._lock:
            self._all.discard(w)
            job, done = w.job, w.done
            if self._closing:
                return
            replacement = self._start()
            self._next(replacement)
        if done is not None and job is not None and job.key not in w.cancelled:
            done(WorkerLost(f"worker process {w.proc.pid} died (exit status {w.proc.returncode}) "
                            f"while running {job.name!r}"))

    def _next(self, w: _Worker) -> None:
        """``w`` is free: give it queued work, or put it back in the idle pool (lock held)."""
        if self._queue:
            self._send(w, *self._queue.popleft())
        else:
            self._idle.append(w)

    def cancel(self, handle) -> None:
        """Stop the job ``handle`` (its key): drop it if queued, kill its worker if running."""
        with self._lock:
            for item in list(self._queue):
                if item[0].key == handle:
                    self._queue.remove(item)
                    return
            for w in self._all:
                if w.job is not None and w.job.key == handle:
                    w.cancelled.add(handle)
                    w.proc.kill()  # the reader thread replaces it
                    return
