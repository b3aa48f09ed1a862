"""How much of a service's thread CPU ran without its process's interpreter lock.

Where services share a process (threads, a Dask worker), the model needs each service's time
holding the lock. Its thread's CPU time over-counts it for a library that computes on the
calling thread with the lock released: DuckDB, Arrow. Nothing in Python reports who holds the
lock, but a thread that holds it can tell that another thread's CPU clock advances meanwhile:
that thread is then running native code, without the lock. So a sampler thread, every
``EVERY_S``, takes the lock (any Python code holds it), reads each running body's thread CPU
clock, spins ``SPIN_S`` and reads it again: the share of the spin the clock advanced is how
much of that moment the body ran natively, and it stands for the interval since the body's
last sample. A body's lock time is then its thread CPU less that native CPU (capped at its
thread CPU).

What it misses: on a machine whose cores are all busy, the sampler's wake-up tends to take
the core of the very thread it measures, so native code is under-read there (down to none),
and the lock time falls back towards the thread's CPU, the old over-count. Reading the
thread's wait for a CPU (schedstat) as native too was tried: the kernel adds that wait in
lumps when the thread gets a core back, which read Python code as 92% native.

Cost: a wake-up and ``SPIN_S`` of holding the lock per ``EVERY_S`` while bodies run (about 1%
of the lock), and none while none do. An estimate, not a count: a sample is one moment.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from .cpu_share import per_thread_clocks

EVERY_S = 0.005
SPIN_S = 50e-6


@dataclass
class _Body:
    clock: int  # its thread's CPU clock
    last: float  # perf_counter of its last sample (or its start)
    native_s: float = 0.0

    def read(self) -> float | None:
        """Its thread's CPU time; None once the thread is gone."""
        try:
            return time.clock_gettime(self.clock)
        except OSError:
            return None


class LockProbe:
    """One per process (``PROBE``); ``start`` and ``stop`` from a body's own thread."""

    def __init__(self, every_s: float = EVERY_S, spin_s: float = SPIN_S, clock=time.perf_counter):
        self.every_s, self.spin_s = every_s, spin_s
        self._clock = clock  # wall clock of the spin (a test gives one it steps itself)
        self._lock = threading.Lock()
        self._bodies: dict[int, _Body] = {}
        self._wake = threading.Condition(self._lock)
        self._sampler: threading.Thread | None = None

    def start(self) -> None:
        me = threading.get_ident()
        with self._lock:
            self._bodies[me] = _Body(time.pthread_getcpuclockid(me), self._clock())
            if self._sampler is None or not self._sampler.is_alive():
                self._sampler = threading.Thread(target=self._run, name="critpath-lock-probe", daemon=True)
                self._sampler.start()
            self._wake.notify()

    def stop(self) -> float:
        """The calling thread's body ended: the CPU seconds it ran without the lock (estimated)."""
        with self._lock:
            body = self._bodies.pop(threading.get_ident(), None)
        return 0.0 if body is None else body.native_s

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._bodies:
                    self._wake.wait()
            time.sleep(self.every_s)
            self.sample()

    def sample(self) -> None:
        """One sample of every running body (the caller holds the interpreter lock, as any
        Python code does)."""
        with self._lock:
            bodies = list(self._bodies.values())
        before = [body.read() for body in bodies]
        t0 = self._clock()
        while self._clock() - t0 < self.spin_s:
            pass
        t1 = self._clock()
        for body, c0 in zip(bodies, before, strict=True):
            c1 = body.read()
            if c0 is None or c1 is None:  # its thread ended meanwhile
                continue
            body.native_s += min(1.0, (c1 - c0) / (t1 - t0)) * max(0.0, t1 - body.last)
            body.last = t1


# no per-thread CPU clocks here: thread CPU is all there is
PROBE = LockProbe() if per_thread_clocks() else None
