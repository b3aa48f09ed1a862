"""How long a service waited for a CPU, counting the threads its libraries start.

Where the process is the service's alone (processes, a Ray slot), the model reads a service's
time alone as its wall time less its wait for a CPU (``planning.destretch``). The body's own
thread's wait (schedstat) misses the threads DuckDB and Arrow start: on a loaded machine those
wait for a core while the body's thread sleeps on their results, so the body's wait says
little and the service reads as slower than it is alone (the bundled refresh's ingests, run at
8 on 2 cores, read back 20-50% long, and a refresh at 1 was predicted 13-18% slow).

So each thread of the process is read (``/proc/self/task/*/schedstat``). Those threads often
end before the body does (a DuckDB connection joins its pool when it closes), so a sampler
thread reads them every ``EVERY_S`` while a body runs, and a thread's last reading stands for
it. The kernel adds a wait when the thread gets a core back, so a reading is a little behind;
what a thread waited after its last reading is lost, at most ``EVERY_S`` of it, and so is what
the threads waited before the first reading (up to twice ``EVERY_S``; the body's own thread's
wait, read at start and end, is the floor).

Several threads waiting at once delay the service once, not once each: two threads that were
ready throughout and each waited 1 s cost it 1 s. So the summed wait is divided by how many
threads were ready to run on average ((CPU + wait) / wall, at least 1); with one thread that is
its wait, as before. A service shorter than ``EVERY_S`` (up to twice that) is never sampled: its body's wait stands.

Cost: a lock at a body's start and end; while bodies come, a wake-up per ``EVERY_S``, and for
a body that runs through two of them a read of each thread's schedstat per wake-up (tens of
microseconds) and one more at its end.
"""
from __future__ import annotations

import os
import threading

EVERY_S = 0.05
IDLE_S = 1.0


def _delays() -> dict[int, float]:
    """Each thread of this process: its seconds runnable but not running."""
    out = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/schedstat", "rb") as f:
                out[int(tid)] = int(f.read().split()[1]) / 1e9
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
    return out


class ThreadWaits:
    """One per process (``THREAD_WAITS``), for one body at a time. A body's start and end only set
    fields (a stream of millisecond services must not pay a thread's wake-up each): the sampler
    wakes every ``EVERY_S`` while bodies come, and reads the threads once the same body runs at
    two of its wake-ups; after ``IDLE_S`` with none it sleeps until the next start."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._round = 0  # which body's span it is: counted up at each start and end
        self._running = False
        self._seen = -1  # the round the sampler saw running at its last wake-up
        self._asleep = True
        self._base: dict[int, float] | None = None  # each thread's wait at its first reading
        self._last: dict[int, float] = {}
        self._thread: threading.Thread | None = None
        self._tid = 0

    def _read(self) -> None:
        now = _delays()
        now.pop(self._tid, None)
        if self._base is None:
            self._base = dict(now)
        for tid, d in now.items():
            self._base.setdefault(tid, 0.0)  # born during the span: all its wait is the body's
            self._last[tid] = d

    def _loop(self) -> None:
        self._tid = threading.get_native_id()
        idle = 0.0
        with self._lock:
            while True:
                if idle >= IDLE_S:
                    self._asleep = True
                    while not self._running:
                        self._wake.wait()
                    self._asleep, idle = False, 0.0
                self._wake.wait(EVERY_S)
                if not self._running:
                    idle += EVERY_S
                    continue
                idle = 0.0
                if self._seen == self._round:
                    self._read()
                self._seen = self._round

    def start(self) -> None:
        """A body starts on the calling thread."""
        with self._lock:
            self._round += 1
            self._running, self._base, self._last = True, None, {}
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="critpath-thread-waits", daemon=True)
                self._asleep = False
                self._thread.start()
            elif self._asleep:
                self._wake.notify()

    def stop(self) -> float | None:
        """The body ended: every thread's wait during it, summed; None if it was never sampled."""
        with self._lock:
            self._running = False
            self._round += 1
            if self._base is None:
                return None
            self._read()
            return sum(max(0.0, d - self._base[tid]) for tid, d in self._last.items())


def effective(waited: float, cpu_s: float, wall_s: float) -> float:
    """The service's delay from ``waited`` seconds of its threads' waits, summed: divided by how
    many of its threads were ready to run on average over its ``wall_s`` (at least one)."""
    if wall_s <= 0:
        return 0.0
    return min(wall_s, waited / max(1.0, (cpu_s + waited) / wall_s))


THREAD_WAITS = ThreadWaits()
