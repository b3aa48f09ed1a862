"""From what a run measured back to what each service would take alone.

History records wall times, and a wall time measured while other services shared the
cores (or, on threads, the interpreter lock) is stretched. Planning from stretched times
would count the contention twice: once in the estimate, once more in the machine model
(``machine.predict``). Two corrections, one per shared resource:

  * CPU cores: the worker reads from the kernel how long the service's thread waited,
    ready to run, for a CPU (``cpu_wait_s``, Linux schedstat); that time comes off.
  * the interpreter lock (threads runner, and each Dask worker process: the caller groups
    the spans by process): nothing measures the wait for it, so it is inferred here from
    the run's recorded intervals. While the lock was saturated (two or more services were
    using it and together held it ``SATURATED`` of the time or more, each at its average
    rate: seconds on a CPU or waiting for one, over its wall seconds), a service that was
    using it (rate >= ``USING``) was either on it or waiting for it: its time off the lock
    in those stretches comes off. Outside them, and for services that hardly used it (a
    sleep, I/O), the wall time stands. The CPU wait counts as use: a thread that the
    kernel keeps off the cores while it holds the lock still holds it, so on a loaded
    machine CPU seconds alone would read a saturated lock as a free one (four services
    each 0.2 s on a CPU and 0.45 s waiting for one, in 1.57 s, held the lock throughout).

What this cannot tell apart: two half-idle services that happened to fill the lock
exactly, without ever waiting for each other, read as two busy ones that waited. On
recorded data that case is rare; the opposite mistake (reading real contention as none)
would plan every threads run as if it had the machine to itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

SATURATED = 0.75  # share of the lock in use from which its users are taken to wait for it
USING = 0.1  # a service using the lock less than this share of its time is not waiting for it


@dataclass(frozen=True)
class Span:
    start: float
    end: float
    cpu_s: float | None  # seconds holding the resource; None: unknown (taken as not using it)
    cpu_wait_s: float = 0.0  # seconds it waited for a CPU core (measured): off its time alone, but lock use


def _rates(spans: Sequence[Span]) -> list[float]:
    wall = [max(0.0, s.end - s.start) for s in spans]
    return [min(1.0, (s.cpu_s + (s.cpu_wait_s or 0.0)) / wall[j]) if s.cpu_s is not None and wall[j] > 0 else 0.0
            for j, s in enumerate(spans)]


def saturated_windows(spans: Sequence[Span], capacity: float = 1.0) -> list[tuple[float, float]]:
    """The stretches of time during which ``spans`` saturated the resource (see the module
    docstring), in order."""
    rate = _rates(spans)
    points = sorted({t for s in spans for t in (s.start, s.end)})
    out: list[tuple[float, float]] = []
    for a, b in zip(points, points[1:], strict=False):
        mid = (a + b) / 2
        users = [j for j, s in enumerate(spans) if s.start <= mid < s.end and rate[j] >= USING]
        # waiting needs someone to wait for: one service alone on the lock waited for nobody
        if len(users) >= 2 and sum(rate[j] for j in users) >= SATURATED * capacity:
            if out and out[-1][1] == a:
                out[-1] = (out[-1][0], b)
            else:
                out.append((a, b))
    return out


def overlap(windows: Sequence[tuple[float, float]], start: float, end: float) -> float:
    """Seconds of [start, end) inside ``windows``."""
    return sum(max(0.0, min(end, b) - max(start, a)) for a, b in windows)


def alone_times(spans: Sequence[Span], capacity: float = 1.0) -> list[float]:
    """Each span's time without its waits: the CPU waits it measured, and the waits for a resource
    of ``capacity`` that ``spans`` shared, inferred from how saturated it was while the span ran."""
    wall = [max(0.0, s.end - s.start) for s in spans]
    own = [max(0.0, wall[j] - (s.cpu_wait_s or 0.0)) for j, s in enumerate(spans)]  # minus CPU waits
    rate = _rates(spans)
    windows = saturated_windows(spans, capacity)
    out = []
    for j, s in enumerate(spans):
        if rate[j] < USING or wall[j] <= 0:
            out.append(own[j])
            continue
        # of its own time, the saturated share not spent holding the resource was spent waiting for it
        share = overlap(windows, s.start, s.end) / wall[j]
        out.append(max(0.0, own[j] - share * (own[j] - (s.cpu_s or 0.0))))
    return out
