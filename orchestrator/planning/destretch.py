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
    #: seconds its thread ran without the resource (native code, the lock released): progress, not use
    native_s: float = 0.0


def _use(s: Span) -> float:
    """Its seconds on the resource: holding it, or holding it while waiting for a CPU."""
    return s.cpu_s + (s.cpu_wait_s or 0.0)


def _average_rates(spans: Sequence[Span]) -> list[float]:
    wall = [max(0.0, s.end - s.start) for s in spans]
    return [min(1.0, _use(s) / wall[j]) if s.cpu_s is not None and wall[j] > 0 else 0.0
            for j, s in enumerate(spans)]


def _windows(spans: Sequence[Span], rate: Sequence[float], users: Sequence[bool],
             capacity: float) -> list[tuple[float, float]]:
    points = sorted({t for s in spans for t in (s.start, s.end)})
    out: list[tuple[float, float]] = []
    for a, b in zip(points, points[1:], strict=False):
        mid = (a + b) / 2
        on = [j for j, s in enumerate(spans) if s.start <= mid < s.end and users[j]]
        # waiting needs someone to wait for: one service alone on the lock waited for nobody
        if len(on) >= 2 and sum(rate[j] for j in on) >= SATURATED * capacity:
            if out and out[-1][1] == a:
                out[-1] = (out[-1][0], b)
            else:
                out.append((a, b))
    return out


def _alone(spans: Sequence[Span], rate: Sequence[float], users: Sequence[bool], windows) -> list[float]:
    out = []
    for j, s in enumerate(spans):
        wall = max(0.0, s.end - s.start)
        own = max(0.0, wall - (s.cpu_wait_s or 0.0))  # minus CPU waits, spread over the span
        if not users[j] or wall <= 0:
            out.append(own)
            continue
        # Outside the saturated windows its time stands, and it used the resource at its rate
        # there; inside them, it was holding the resource, running without it (native code) or
        # waiting for it, so what it held there (the rest of what it held) and its share of its
        # native time are what that stretch takes alone.
        inside = overlap(windows, s.start, s.end)
        outside = wall - inside
        held_outside = min(s.cpu_s or 0.0, rate[j] * outside)
        native_inside = (s.native_s or 0.0) * inside / wall
        out.append(min(own, outside * own / wall + max(0.0, (s.cpu_s or 0.0) - held_outside) + native_inside))
    return out


@dataclass(frozen=True)
class Destretched:
    alone: list[float]  # each span's time alone
    windows: list[tuple[float, float]]  # the stretches during which the resource was saturated


#: the windows are found again at most this many times (they settle in two or three)
ROUNDS = 10


def destretch(spans: Sequence[Span], capacity: float = 1.0) -> Destretched:
    """Each span's time alone, and the saturated windows.

    A service's rate of use is first its average over its span. That under-reads it where fewer
    services shared the lock than on average: at the tail of a fan-out of 8, the last two run
    at half the lock each, yet their averages (about 1/8) add up to a quarter, and that tail
    read as free inflated their times alone by up to twice (a 0.5 s service read back as
    1.04 s). So the rate is then taken as what the service would use alone (its use over its
    time alone), and the windows are found again, until they no longer grow. Rates only grow,
    so this ends, and a span that never shared a saturated lock keeps its wall time."""
    rate = _average_rates(spans)
    users = [r >= USING for r in rate]
    windows = _windows(spans, rate, users, capacity)
    alone = _alone(spans, rate, users, windows)
    for _ in range(ROUNDS):
        grown = [max(rate[j], min(1.0, _use(s) / alone[j]))
                 if users[j] and alone[j] > 0 else rate[j] for j, s in enumerate(spans)]
        if all(abs(a - b) < 1e-9 for a, b in zip(grown, rate, strict=True)):
            break
        rate = grown
        windows = _windows(spans, rate, users, capacity)
        alone = _alone(spans, rate, users, windows)
    return Destretched(alone, windows)


def overlap(windows: Sequence[tuple[float, float]], start: float, end: float) -> float:
    """Seconds of [start, end) inside ``windows``."""
    return sum(max(0.0, min(end, b) - max(start, a)) for a, b in windows)


def alone_times(spans: Sequence[Span], capacity: float = 1.0) -> list[float]:
    """Each span's time without its waits: the CPU waits it measured, and the waits for a resource
    of ``capacity`` that ``spans`` shared, inferred from how saturated it was while the span ran."""
    return destretch(spans, capacity).alone
