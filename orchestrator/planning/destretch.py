"""From what a run measured back to what each service would take alone.

History records wall times, and a wall time measured while other services shared the
cores (or, on threads, the interpreter lock) is stretched. Planning from stretched times
would count the contention twice: once in the estimate, once more in the machine model
(``machine.predict``). Two corrections, one per shared resource:

  * CPU cores: the worker reads from the kernel how long the service's thread waited,
    ready to run, for a CPU (``cpu_wait_s``, Linux schedstat); that time comes off.
  * the interpreter lock (threads runner): nothing measures the wait for it, so it is
    inferred here from the run's recorded intervals. While the lock was saturated (the
    services running used it ``SATURATED`` of the time or more, each at its average rate
    CPU seconds / wall seconds over its attempt), a service that was using it
    (rate >= ``USING``) was either on it or waiting for it: its time off the lock in those
    stretches comes off. Outside them, and for services that hardly used it (a sleep, I/O),
    the wall time stands.

What this cannot tell apart: two half-idle services that happened to fill the lock
exactly, without ever waiting for each other, read as two busy ones that waited. On
recorded data that case is rare; the opposite mistake (reading real contention as none)
would plan every threads run as if it had the machine to itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

SATURATED = 0.85  # share of the lock in use from which its users are taken to wait for it
USING = 0.1  # a service using the lock less than this share of its time is not waiting for it


@dataclass(frozen=True)
class Span:
    start: float
    end: float
    cpu_s: float | None  # seconds holding the resource; None: unknown (taken as not using it)


def alone_times(spans: Sequence[Span], capacity: float = 1.0) -> list[float]:
    """Each span's time without the waits for a resource of ``capacity`` that ``spans`` shared."""
    wall = [max(0.0, s.end - s.start) for s in spans]
    rate = [min(1.0, s.cpu_s / wall[j]) if s.cpu_s is not None and wall[j] > 0 else 0.0
            for j, s in enumerate(spans)]
    points = sorted({t for s in spans for t in (s.start, s.end)})
    waited = [0.0] * len(spans)
    for a, b in zip(points, points[1:], strict=False):
        mid = (a + b) / 2
        active = [j for j, s in enumerate(spans) if s.start <= mid < s.end]
        if sum(rate[j] for j in active) < SATURATED * capacity:
            continue
        for j in active:
            if rate[j] >= USING:
                waited[j] += (b - a) * (1.0 - rate[j])
    return [max(0.0, wall[j] - waited[j]) for j in range(len(spans))]
