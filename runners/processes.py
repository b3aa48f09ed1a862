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

Nothing a service starts outlives its worker, and no worker outlives critpath:
  * each worker leads a process group (a session) of its own, which the processes
    a service starts join (``multiprocessing.Pool``, ``os.fork``); a cancel, a dead
    worker and ``__exit__`` kill the whole group, never the worker alone;
  * the reader thread learns that its worker died from the process itself (a pidfd,
    in the same ``poll`` as the result pipe), not from the pipe's end of file, which
    never comes while a child of the service still holds the pipe: the slot is
    freed and the worker replaced at once;
  * the worker's guard (``runners.procworker``) kills the group when critpath dies,
    however it dies (``kill -9`` too);
  * a signal to critpath's process group (a terminal's Ctrl-C, GNU ``timeout``)
    does not reach the workers: critpath cancels their work itself, in order.
"""
from __future__ import annotations

import os
import pickle
import select
import signal
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass, field

from .base import Done, Job, WorkerLost
from .procworker import split_frames, write_frame

#: how much of the result pipe one read takes
CHUNK = 1 << 20


@dataclass(eq=False)
class _Worker:
    proc: subprocess.Popen
    jobs: object  # writable pipe
    job: Job | None = None
    done: Done | None = None
    cancelled: set = field(default_factory=set)
    reader: threading.Thread | None = None
    #: held while the group is signalled and while the worker is reaped: once reaped, its
    #: pid (the group's id) may belong to another process, which must never be signalled
    reaping: threading.Lock = field(default_factory=threading.Lock)

    def kill_group(self) -> None:
        """SIGKILL to the worker's whole process group, unless the worker was reaped already."""
        with self.reaping:
            if self.proc.returncode is None:
                _killpg(self.proc.pid)


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # the group is empty already
        pass


def _pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when process ``pid`` ends (Linux 5.3+), else None."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


class ProcessRunner:
    name = "processes"

    def __init__(self, workers: int = 4, address: str | None = None):
        if address:
            raise ValueError("--address does not apply to --runner processes; use --runner dask or ray")
        self.capacity = workers
        self.cores = None  # this machine's
        self._lock = threading.Lock()
        self._idle: deque[_Worker] = deque()
        self._queue: deque[tuple[Job, Done, bytes]] = deque()  # only while a replacement starts
        self._all: set[_Worker] = set()
        self._closing = False

    # -- lifetime --------------------------------------------------------------
    def __enter__(self):
        try:
            for _ in range(self.capacity):
                with self._lock:
                    self._idle.append(self._start())
        except BaseException:
            self.__exit__()
            raise
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
        for w in workers:  # its reader reaps it once it has exited
            if w.job is None and w.reader is not None:
                w.reader.join(5)
        for w in workers:  # still busy (an abandoned attempt), and whatever any service left behind
            w.kill_group()
        for w in workers:
            if w.reader is not None:
                w.reader.join(10)
            with w.reaping:  # only if its reader could not (no pidfd, and a pipe still held)
                w.proc.wait()

    def _env(self) -> dict:
        # the worker imports services from the same folders as this process
        own = [p for p in sys.path if p and os.path.isdir(p)]
        paths = dict.fromkeys([os.getcwd(), *own])
        return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}

    def _start(self) -> _Worker:
        """A new worker, in a session of its own, with its reader thread (lock held)."""
        job_r, job_w = os.pipe()
        out_r, out_w = os.pipe()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "runners.procworker", str(job_r), str(out_w), str(os.getpid())],
                pass_fds=(job_r, out_w), env=self._env(), stdin=subprocess.DEVNULL, start_new_session=True)
        except BaseException:
            for fd in (job_r, job_w, out_r, out_w):
                os.close(fd)
            raise
        os.close(job_r)
        os.close(out_w)
        w = _Worker(proc, os.fdopen(job_w, "wb"))
        self._all.add(w)
        w.reader = threading.Thread(target=self._read, args=(w, out_r, _pidfd(proc.pid)), daemon=True,
                                    name=f"critpath-proc-{proc.pid}")
        w.reader.start()
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
        except (BrokenPipeError, OSError, ValueError):  # ValueError: closed by __exit__
            pass  # the reader thread sees the worker die and reports it lost

    def _read(self, w: _Worker, fd: int, pidfd: int | None) -> None:
        """Delivers ``w``'s outcomes until the worker ends, then reports its job lost and
        replaces it. Blocks in ``poll`` on the result pipe and, where there is one, on the
        worker's pidfd: the worker's end is seen at once, even while a process the service
        started keeps the pipe open."""
        os.set_blocking(fd, False)
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if pidfd is not None:
            poller.register(pidfd, select.POLLIN)
        buf = bytearray()
        ended = False
        try:
            while not ended:
                events = poller.poll()
                ended = any(f == pidfd for f, _ in events)
                # whatever the worker wrote before it ended is still delivered
                ended = not self._drain(fd, buf) or ended
                for frame in split_frames(buf):
                    try:
                        outcome = pickle.loads(frame)
                    except Exception:  # a service wrote into the result pipe: the stream is lost
                        w.kill_group()  # its job is reported lost below, and the worker replaced
                        ended = True
                        break
                    with self._lock:
                        done, w.job, w.done = w.done, None, None
                        if not ended:
                            self._next(w)
                    if done is not None:
                        done(outcome)
        finally:
            os.close(fd)
            if pidfd is not None:
                os.close(pidfd)
        # the worker ended (killed by cancel, or died): take down what its services left
        # running (they may hold the pipe), then reap it
        w.kill_group()  # an unreaped worker keeps its pid, so the group id is still its own
        with w.reaping:
            w.proc.wait()
        with self._lock:
            self._all.discard(w)
            job, done = w.job, w.done
            if self._idle and w in self._idle:
                self._idle.remove(w)
            if self._closing:
                return
            replacement = self._start()
            self._next(replacement)
        if done is not None and job is not None and job.key not in w.cancelled:
            done(WorkerLost(f"worker process {w.proc.pid} died (exit status {w.proc.returncode}) "
                            f"while running {job.name!r}"))

    @staticmethod
    def _drain(fd: int, buf: bytearray) -> bool:
        """Appends what the pipe holds now to ``buf``; False at end of file."""
        while True:
            try:
                chunk = os.read(fd, CHUNK)
            except BlockingIOError:
                return True
            if not chunk:
                return False
            buf += chunk

    def _next(self, w: _Worker) -> None:
        """``w`` is free: give it queued work, or put it back in the idle pool (lock held)."""
        if self._queue:
            self._send(w, *self._queue.popleft())
        else:
            self._idle.append(w)

    def cancel(self, handle) -> None:
        """Stop the job ``handle`` (its key): drop it if queued, kill its worker's whole
        process group if running (the reader thread replaces the worker)."""
        with self._lock:
            for item in list(self._queue):
                if item[0].key == handle:
                    self._queue.remove(item)
                    return
            for w in self._all:
                if w.job is not None and w.job.key == handle:
                    w.cancelled.add(handle)
                    w.kill_group()
                    return
