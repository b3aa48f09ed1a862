"""Pure checks on a run's recorded schedule: overlaps of intervals, order of events.

Intervals are ``[start, end)`` in Unix seconds as measured on the workers, one per
attempt (a failed attempt held its slots too). Nothing here reads a clock.
"""
from __future__ import annotations

from typing import Iterable


def attempt_intervals(report: dict, names: Iterable[str] | None = None) -> list[tuple[float, float]]:
    """Every attempt of the named services (default: all) that ran, as (start, end)."""
    services = report["services"]
    out = []
    for name in services if names is None else names:
        for h in services[name]["attempt_history"]:
            out.append((h["start"], h["end"]))
    return out


def max_overlap(intervals: Iterable[tuple[float, float]]) -> int:
    """The most intervals open at one instant. ``[start, end)``: at equal times an end
    is counted before a start, so back-to-back intervals do not overlap."""
    points = sorted(p for s, e in intervals for p in ((s, 1), (e, -1)))  # -1 sorts first
    open_, most = 0, 0
    for _, delta in points:
        open_ += delta
        most = max(most, open_)
    return most


def order_violations(report: dict, edges: Iterable[tuple[str, str]]) -> list[str]:
    """Edges (upstream, downstream) where any attempt of the downstream started before the
    upstream's (last, successful) attempt ended."""
    services = report["services"]
    bad = []
    for up, down in edges:
        u, d = services[up], services[down]
        if d["state"] == "skipped":
            continue
        first_start = min(h["start"] for h in d["attempt_history"])
        if u["end"] is None or first_start < u["end"]:
            bad.append(f"{down!r} started at {first_start!r} before {up!r} ended at {u['end']!r}")
    return bad


def jumped_the_queue(events: list[tuple[float, str, str]], favoured: Iterable[str],
                     others: Iterable[str]) -> list[str]:
    """For each service in ``favoured``: services of ``others`` dispatched after it became
    ready (its last 'ready') and before it was dispatched."""
    favoured, others = set(favoured), set(others)
    waiting: dict[str, list[str]] = {}
    found = []
    for _, kind, name in events:
        if kind == "ready" and name in favoured:
            waiting[name] = []
        elif kind == "dispatch":
            if name in waiting:
                if waiting[name]:
                    found.append(f"{name!r} waited while {', '.join(waiting[name])} were dispatched")
                del waiting[name]
            elif name in others:
                for jumped in waiting.values():
                    jumped.append(name)
    return found


def replay_problems(events: list[tuple[float, str, str]], graph, max_concurrency: int) -> list[str]:
    """Replays a dispatcher's event log (``Dispatcher.events``) against ``graph``'s limits.

    Reports every dispatch that took a slot over the global or a pool limit, and every
    ``wait`` marker (the dispatcher going idle until the next event) at which a ready,
    undispatched service had a free global slot *and* a free slot in its pool: the
    dispatcher is work-conserving only if it never waits while such a service exists.
    Slots are held from ``dispatch`` to the attempt's end (complete, retry, fail, cancel).
    """
    pool_of = {n: graph.services[n].pool for n in graph.names}
    limit = {None: float("inf"), **graph.pools}
    running = {p: 0 for p in limit}
    ready_in: dict = {p: {} for p in limit}  # pool -> ready names, in order (dict as ordered set)
    total = 0
    problems = []
    for t, kind, name in events:
        pool = pool_of.get(name)
        if kind == "ready":
            ready_in[pool][name] = None
        elif kind == "dispatch":
            if name not in ready_in[pool]:
                problems.append(f"{name!r} dispatched at {t!r} without being ready")
            ready_in[pool].pop(name, None)
            total += 1
            running[pool] += 1
            if total > max_concurrency or running[pool] > limit[pool]:
                problems.append(f"{name!r} dispatched at {t!r} over a limit: {total} running "
                                f"(max {max_concurrency}), {running[pool]} in pool {pool!r} (limit {limit[pool]})")
        elif kind in ("complete", "retry", "fail", "cancel"):
            total -= 1
            running[pool] -= 1
        elif kind == "wait" and total < max_concurrency:
            startable = [next(iter(names)) for p, names in ready_in.items() if names and running[p] < limit[p]]
            if startable:
                problems.append(f"idle at {t!r} while {', '.join(map(repr, startable))} could start "
                                f"({total} of {max_concurrency} slots taken)")
    return problems
