"""Pools shared across refreshes: what the dispatcher asks of them, and how long it waited.

A pool limit in critpath.toml protects a warehouse from one refresh. Two refreshes running at
once (an hourly one and a nightly one) must not together exceed it either, so with shared
pools each slot is also taken from a store every refresh sees (``flows.shared_pools``: a
Prefect global concurrency limit per pool, with a lease per attempt). The dispatcher stays in
charge of the order: it asks for a shared slot only for the service it would start next in
that pool, never blocks on the answer, and tries that pool again when the store says to.

``SharedSlots`` is the store's side, ``SharedGate`` the dispatcher's: it keeps which attempt
holds which lease, when each pool may be asked again, and how long each service waited.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

#: how soon, at least and at most, a pool that had no free shared slot is asked again
#: (the store's hint clamped: a busy server's hint can be 30 s, which would waste a freed slot)
RETRY_MIN_S, RETRY_MAX_S = 0.1, 2.0


@dataclass(frozen=True)
class Lease:
    """A shared slot of ``pool``, held until given back (or until the store lets it expire)."""

    pool: str
    id: str


@dataclass(frozen=True)
class Busy:
    """Every shared slot of the pool is taken; ask again in ``retry_after`` seconds."""

    retry_after: float


class SharedSlots(Protocol):
    def take(self, pool: str) -> Lease | Busy: ...

    def give_back(self, lease: Lease) -> None: ...


@dataclass
class PoolWait:
    """One pool's time with no shared slot free for a service that could otherwise start."""

    since: float | None = None  # when the current wait began; None while not waiting
    spans: list[tuple[float, float]] = field(default_factory=list)  # past waits, in order

    def overlap(self, start: float, end: float) -> float:
        spans = [*self.spans, *([(self.since, end)] if self.since is not None else [])]
        return sum(max(0.0, min(end, b) - max(start, a)) for a, b in spans)


class SharedGate:
    """The dispatcher's view of ``slots`` for the pools named in ``pools``."""

    def __init__(self, slots: SharedSlots, pools, clock):
        self.slots = slots
        self.pools = set(pools)
        self.clock = clock
        self.held: dict[int, Lease] = {}  # service index -> the lease its running attempt holds
        self.next_try: dict[str, float] = {}  # pool -> not asked again before then
        self.waits: dict[str, PoolWait] = {p: PoolWait() for p in self.pools}
        self.waited: dict[int, float] = {}  # service index -> seconds it waited for a shared slot

    def ask(self, i: int, pool: str | None, ready_at: float) -> bool | float:
        """May ``i`` (ready since ``ready_at``) start now as far as shared slots go? True, or
        False while its pool is known busy, or the time to ask again (a new refusal)."""
        if pool not in self.pools:
            return True
        now = self.clock()
        if now < self.next_try.get(pool, 0.0):
            return False
        got = self.slots.take(pool)
        wait = self.waits[pool]
        if isinstance(got, Busy):
            if wait.since is None:
                wait.since = now
            again = now + min(RETRY_MAX_S, max(RETRY_MIN_S, got.retry_after))
            self.next_try[pool] = again
            return again
        if wait.since is not None:
            wait.spans.append((wait.since, now))
            wait.since = None
        self.held[i] = got
        waited = wait.overlap(ready_at, now)
        if waited > 0:
            self.waited[i] = self.waited.get(i, 0.0) + waited
        return True

    def release(self, i: int) -> None:
        """``i``'s attempt ended (whatever the outcome): its shared slot goes back."""
        lease = self.held.pop(i, None)
        if lease is not None:
            self.slots.give_back(lease)

    def release_all(self) -> None:
        for i in sorted(self.held):
            self.release(i)
