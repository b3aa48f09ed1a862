"""The dispatcher's lookahead: a slot's next service chosen while the slot is still busy.

On Dask and Ray every hop costs a round trip: the worker ends a service, critpath hears
of it, chooses, and sends the next (2-3 ms with 30 ms services: 10% of the run). So
where no slot is free, the dispatcher chooses each slot's next service while the slot
is still busy, by the same policy (``ReadyQueue.reserve_after``), and the runner queues
it on that slot, to start there the moment the current one ends. The choice is made
only when nothing that may become ready meanwhile outranks it, so the order is the
policy's; it holds its slots from then on, so the limits are never exceeded. It counts
as dispatched when the dispatcher hears that the one before it ended (then its timeout
starts too). One taken back before it started (the one before it timed out, the run was
cancelled) is ready again, its attempt unspent.

Services shorter than a round trip: one queued service is not enough. Two 0.5 ms services
end long before critpath hears that the first did, and the slot then waits a whole round
trip for its next (the mDiffFit services of a Montage trace: a hundred of them, under 2 ms
each, cost 10-15% of the run that way). So a busy slot is given more while the work queued
on it is expected to end within one round trip (``_hop``, the runner's turnaround less the
service's own time, measured in this run on services sent the usual way), up to
``MAX_AHEAD`` queued; each is chosen by the same rule as the first, so the order is still the
policy's. With one exception: while a more critical service may become ready (the guard), a
service still goes ahead if the work queued on that slot, itself included, ends within one
round trip. The critical one, ready when its upstream ends, is sent then and reaches a slot a
round trip later, by when that work is done: it waits for none of it, as without the line. (At
the tail of a Montage run the guard held for its last half-second, while the mConcatFit,
mBgModel and mBackgrounds waited on their upstreams, and every mDiffFit of a millisecond there
took a round trip.) Taking one back takes back those queued behind it first (a slot runs its queue in
order, and one sent behind another waits for it).

``Lookahead`` is part of ``dispatcher.Dispatcher`` (a mixin: it reads and changes the
dispatcher's own state, ``_inflight``, ``_q``, ``_runs``, ``plan``, ``runner``), kept in a
module of its own so the dispatcher's loop reads without it. Its state: ``_queued`` (service
-> its attempt sent ahead, not yet started), ``_next`` (a running or queued service -> the
service queued behind it) and ``_hop`` (the round trip, seconds).
"""
from __future__ import annotations

import itertools

from .flights import InFlight, Queued

#: the most services queued behind one running service (each runner may refuse more)
MAX_AHEAD = 16
#: the round trip assumed until one is measured, and the weight of each new measurement
HOP_S, HOP_WEIGHT = 0.01, 0.25


class Lookahead:
    _hop: float = HOP_S

    def _look_ahead(self) -> None:
        """Queue the best ready service on the slot expected to free first, as list scheduling
        gives it (by the plan's estimates), while that slot has nothing queued yet, or less than
        a round trip's work (``_hop``). While a more critical service may become ready, only
        what fits in the slot's round trip goes (see the module's note). A slot that frees later must not take it: a short
        service's slot would then free first and find nothing, while the chosen one waits behind
        a long one."""
        if self._q.running < self.max_concurrency:
            return  # a slot is free: nothing is chosen ahead (``reserve_after``), so nothing to compute
        now = self.clock()
        free_at = {}  # running service -> when its slot is expected to free
        tail, queued, ahead_s = {}, {}, {}  # running service -> the last sent to its slot; how many; their seconds
        for i in self._inflight:
            tail[i], queued[i], ahead_s[i] = i, 0, 0.0
            while tail[i] in self._next:
                tail[i] = self._next[tail[i]]
                queued[i] += 1
                ahead_s[i] += self.plan.est[tail[i]]
            free_at[i] = max(now, (self._runs[i].dispatched or now) + self.plan.est[i]) + ahead_s[i]
        guard = self._guard()
        while free_at:
            i = min(free_at, key=lambda k: (free_at[k], k))
            last = tail[i]
            handle = self._queued[last].handle if last != i else self._inflight[i].handle
            if handle is None or (queued[i] and (queued[i] >= MAX_AHEAD or ahead_s[i] >= self._hop)):
                return  # the first slot to free has enough queued, or cannot take one
            # the guard bends for work that ends within a round trip of this slot's last: a more
            # critical service that becomes ready meanwhile cannot reach the slot before it ends
            room = self._hop - ahead_s[i]
            j = self._q.reserve_after(last, guard, lambda k, room=room: self.plan.est[k] <= room)
            if j is None:
                return
            attempt, token = self._runs[j].attempts + 1, next(self._tokens)
            try:
                handle = self.runner.submit_behind(self._job(j, attempt), self._rank[j], self._done(j, token), handle)
            except Exception:  # it could not be sent now: it goes the usual way when a slot frees
                handle = None
            if handle is None:
                self._q.unreserve(j)
                return
            self._queued[j] = Queued(last, attempt, handle, token)
            self._next[last] = j
            free_at[i] += self.plan.est[j]
            tail[i], queued[i], ahead_s[i] = j, queued[i] + 1, ahead_s[i] + self.plan.est[j]

    def _turnaround(self, flight, seconds: float, ran_s: float) -> None:
        """An attempt sent the usual way took ``seconds`` from its dispatch to its report, ``ran_s``
        of them on the worker: the rest is the round trip, which sets how much goes ahead."""
        if not flight.ahead and seconds >= 0 and ran_s >= 0:
            sample = min(1.0, max(0.0, seconds - ran_s))
            self._hop += HOP_WEIGHT * (sample - self._hop)

    def _steal(self) -> None:
        """A slot is free and nothing ready can take it, while a service waits queued behind one
        that runs on (it overran its estimate, or ended later than another): the most critical
        of them is taken back and sent the usual way, to the free slot, as the policy would."""
        j = min(self._queued, key=lambda k: (-self._rank[k], k))
        self._take_back(j)
        self._dispatch()

    def _guard(self) -> tuple[float, int] | None:
        """The heap key of the best service that may become ready while what runs now runs: one
        whose every unfinished upstream is running or queued. (One still waiting on a service
        that has not started cannot be ready before a slot frees for that one first.)"""
        active = list(itertools.chain(self._inflight, self._queued))
        pending: dict[int, int] = {}  # successor -> how many of its unfinished upstreams are active
        for i in active:
            for s in self.graph.succs[i]:
                pending[s] = pending.get(s, 0) + 1
        best = None
        for s, n in pending.items():
            if n == self._q.waiting[s] and s not in self._q.skipped:
                key = (-self._rank[s], s)
                if best is None or key < best:
                    best = key
        return best

    def _promote(self, j: int) -> None:
        """Queued ``j`` started: the one before it on its slot ended (and so did any queued before
        that one, whose reports are late: they started first)."""
        before = self._queued[j].behind
        if before in self._queued:
            self._promote(before)
        qd = self._queued.pop(j)
        self._next.pop(qd.behind, None)
        self._q.take_over(j)
        self._began(j, InFlight(qd.attempt, qd.handle, token=qd.token, ahead=True))
        self._arm_timeout(j, qd.attempt)

    def _unqueue(self, j: int) -> None:
        """Queued ``j`` never started: ready again, its attempt unspent."""
        qd = self._queued.pop(j)
        self._next.pop(qd.behind, None)
        self._q.unreserve(j)

    def _take_back(self, j: int) -> None:
        """Take queued ``j`` back from its slot, and first whatever was queued behind it (it would
        wait for ``j`` there); if it has started there already, it runs."""
        if j not in self._queued:
            return  # taken back already, with the one it was queued behind
        if j in self._next:
            self._take_back(self._next[j])
            if j not in self._queued:
                return  # the one behind it had started: so had ``j``, which now runs
        try:
            back = self.runner.recall(self._queued[j].handle)
        except Exception:  # the slot cannot be reached: it runs or is lost, and says so
            back = False
        if back:
            self._unqueue(j)
        else:
            self._promote(j)
