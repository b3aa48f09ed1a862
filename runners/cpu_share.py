"""A service's whole CPU in a worker process it shares with other services.

Where services run on the threads of one process (the threads runner, a Dask worker), the
body's own thread's CPU time misses the threads its libraries start: DuckDB's and Arrow's
worker pools, 36% of the bundled refresh's CPU. Those threads are not the service's, so no
clock names the service that made them work; but the process's CPU clock counts them. So the
process's CPU that no running body's thread accounts for is split, interval by interval,
evenly among the bodies running in that interval: a service alone in its process is charged
the whole process's CPU over its span, as a process of its own would be (processes, Ray).

The cost is one process clock and one thread clock per running body at each start and end
(a few microseconds): nothing runs per interval in between. The even split is exact for one
body and a fair guess for several (nothing tells which of them a pool thread worked for).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass
class _Body:
    clock: int  # the body's thread's CPU clock id
    seen: float  # that clock when last settled
    extra: float = 0.0  # process CPU charged to it beyond its own thread's


class Accountant:
    """One per process (``ACCOUNTANT``); safe to call from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[int, _Body] = {}
        self._process = time.process_time()

    def _settle(self) -> None:
        """Charge the process CPU used since the last settle, beyond the running bodies' own
        threads, evenly to those bodies. Called with the lock held."""
        now = time.process_time()
        own = 0.0
        for body in self._running.values():
            t = time.clock_gettime(body.clock)
            own += t - body.seen
            body.seen = t
        extra = now - self._process - own
        self._process = now
        if self._running and extra > 0:  # CPU of a process with no body running is nobody's
            share = extra / len(self._running)
            for body in self._running.values():
                body.extra += share

    def start(self) -> None:
        """The calling thread starts a body."""
        me = threading.get_ident()
        clock = time.pthread_getcpuclockid(me)
        with self._lock:
            self._settle()
            self._running[me] = _Body(clock, time.clock_gettime(clock))

    def stop(self) -> float:
        """The calling thread's body ended: the process CPU charged to it beyond its thread's."""
        with self._lock:
            self._settle()
            body = self._running.pop(threading.get_ident(), None)
        return 0.0 if body is None else body.extra


def per_thread_clocks() -> bool:
    """Whether this platform gives each thread a CPU clock that other threads can read."""
    try:
        time.pthread_getcpuclockid(threading.get_ident())
    except (AttributeError, OSError):
        return False
    return True


# not on such a platform: the thread's own CPU is all there is
ACCOUNTANT = Accountant() if per_thread_clocks() else None
