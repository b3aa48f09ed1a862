"""Task selection policy: which ready service starts next, under the limits.

This one class is used twice: by the planner's discrete-event simulation and by
the live dispatcher. The simulated makespan is therefore the makespan of the
dispatcher's own policy with zero overhead, not of some idealised scheduler.

Policy (list scheduling with critical-path priorities):
  * a service is *ready* the moment its last upstream completed;
  * among ready services the highest priority (longest estimated path to the end
    of the graph, own estimate included) starts first; ties go to the smaller name;
  * a service starts only when a global slot *and* a slot in its pool are free;
    a service whose pool is full does not block others behind it (work-conserving);
  * nothing is reserved for a service that is still waiting on its upstreams;
  * shared pools (optional ``gate``): a slot that other refreshes share is asked for only
    for the most critical ready service of its pool, once it has a global slot and fits the
    cores; a pool whose shared slots are all taken closes for this round, and services of
    other pools still start;
  * cpu-aware (optional, ``cpu`` and ``cores`` given): a service starts only while the
    CPU demand of what runs, its own included, fits the cores (or nothing runs at all,
    so a service wider than the machine still runs, alone). Ready services are tried
    most critical first; one that does not fit waits, and a less critical one that
    fits may start meanwhile. So a crowd of small services cannot stretch the long pole
    by sharing its cores, yet idle cores are not wasted.

State kept: per-service count of unfinished upstreams, one heap of ready services
per pool, running counts and (cpu-aware) the CPU demand running. Every method is
O(log n) plus O(pools), plus O(k log n) for the k ready services that do not fit.
"""
from __future__ import annotations

import heapq
from typing import Callable, Sequence

from .graph import Graph

_NONE = object()


class ReadyQueue:
    def __init__(self, graph: Graph, priority: Sequence[float], max_concurrency: int,
                 cpu: Sequence[float] | None = None, cores: float | None = None):
        self.graph = graph
        self.cpu, self.cores = (cpu, cores) if cpu is not None and cores else (None, None)
        self.running_cpu = 0.0
        self.max_concurrency = max_concurrency
        self.priority = priority
        self.waiting = [len(p) for p in graph.preds]
        self.pool_of: list[str | None] = [graph.services[n].pool for n in graph.names]
        self.limit: dict[str | None, float] = {None: float("inf"), **graph.pools}
        self.heaps: dict[str | None, list[tuple[float, int]]] = {p: [] for p in self.limit}
        self.running_in: dict[str | None, int] = {p: 0 for p in self.limit}
        self.running = 0
        self.skipped: set[int] = set()
        self.behind: dict[int, int] = {}  # reserved service -> the running one it takes over from
        for i, w in enumerate(self.waiting):
            if w == 0:
                self.push(i)

    def push(self, i: int) -> None:
        """Make ``i`` ready (first time, or again after a failed attempt to be retried)."""
        heapq.heappush(self.heaps[self.pool_of[i]], (-self.priority[i], i))

    def pop_startable(self, gate: Callable[[int], bool] | None = None) -> list[int]:
        """Take every service that may start now, best first, and count them as running.
        ``gate(i)``, asked last for each service that may otherwise start, may refuse it (no
        shared slot free); its pool then closes until the next call."""
        out: list[int] = []
        put_back: list[tuple[str | None, tuple[float, int]]] = []
        closed: set[str | None] = set()
        while self.running < self.max_concurrency:
            best, head = _NONE, None
            for pool, heap in self.heaps.items():
                if heap and pool not in closed and self.running_in[pool] < self.limit[pool]:
                    if head is None or heap[0] < head:
                        best, head = pool, heap[0]
            if best is _NONE:  # the unpooled heap's key is None, hence a sentinel
                break
            item = heapq.heappop(self.heaps[best])
            i = item[1]
            if self.cpu is not None and self.running and self.running_cpu + self.cpu[i] > self.cores + 1e-9:
                put_back.append((best, item))  # put back below, once the others were tried
                continue
            if gate is not None and not gate(i):
                closed.add(best)
                put_back.append((best, item))
                continue
            self.running += 1
            self.running_in[best] += 1
            if self.cpu is not None:
                self.running_cpu += self.cpu[i]
            out.append(i)
        for pool, item in put_back:
            heapq.heappush(self.heaps[pool], item)
        return out

    def reserve_after(self, i: int, guard: tuple[float, int] | None = None,
                      harmless: Callable[[int], bool] | None = None) -> int | None:
        """The service that takes running ``i``'s slots when ``i`` ends, chosen now (the lookahead:
        see the dispatcher); None when it cannot be known yet.

        Only when no slot is free (else it would have started already), and never when cpu-aware:
        the cores free at ``i``'s end are not known now. It is the best ready service whose pool
        has room, or is ``i``'s own (whose slot ``i`` hands on). ``guard``: the heap key of the
        best service that may become ready before ``i`` ends (a successor of what runs); the
        choice is made only if it outranks that one, so the order stays the policy's, or if
        ``harmless`` says the guarded one cannot be kept waiting by it (the lookahead: work that
        ends before the guarded one could reach the slot anyway). It takes
        ``i``'s global slot when ``i`` ends (``take_over``), so it holds none until then; a slot
        of another pool than ``i``'s it holds from now."""
        if self.cpu is not None or self.running < self.max_concurrency:
            return None
        mine = self.pool_of[i]
        best, head = _NONE, None
        for pool, heap in self.heaps.items():
            if heap and (pool == mine or self.running_in[pool] < self.limit[pool]):
                if head is None or heap[0] < head:
                    best, head = pool, heap[0]
        if best is _NONE or (guard is not None and not head < guard and not (harmless and harmless(head[1]))):
            return None
        j = heapq.heappop(self.heaps[best])[1]
        self.behind[j] = i
        if best != mine:
            self.running_in[best] += 1
        return j

    def take_over(self, j: int) -> None:
        """Reserved ``j`` started, in the slots of the one it was reserved behind."""
        i = self.behind.pop(j)
        self.running += 1
        if self.pool_of[j] == self.pool_of[i]:
            self.running_in[self.pool_of[j]] += 1

    def unreserve(self, j: int) -> None:
        """A reserved ``j`` did not start after all (taken back, or its slot was lost): ready again."""
        i = self.behind.pop(j)
        if self.pool_of[j] != self.pool_of[i]:
            self.running_in[self.pool_of[j]] -= 1
        self.push(j)

    def admit(self, i: int) -> None:
        """Count ready ``i`` as running now, whatever the limits: a service that was already
        running when a simulation starts from the middle of a run (``machine.predict``'s
        ``started``) holds its slots from the first instant."""
        heap = self.heaps[self.pool_of[i]]
        heap.remove((-self.priority[i], i))
        heapq.heapify(heap)
        self.running += 1
        self.running_in[self.pool_of[i]] += 1
        if self.cpu is not None:
            self.running_cpu += self.cpu[i]

    def release(self, i: int) -> None:
        """``i`` no longer holds its slots (attempt ended, whatever the outcome)."""
        self.running -= 1
        self.running_in[self.pool_of[i]] -= 1
        if self.cpu is not None:
            self.running_cpu = max(0.0, self.running_cpu - self.cpu[i])

    def completed(self, i: int) -> list[int]:
        """``i`` completed: returns the services that became ready (already queued)."""
        ready = []
        for j in self.graph.succs[i]:
            self.waiting[j] -= 1
            if self.waiting[j] == 0 and j not in self.skipped:
                self.push(j)
                ready.append(j)
        return ready

    def failed(self, i: int) -> list[int]:
        """``i`` failed for good: every descendant is skipped; returns them in index order."""
        newly = sorted(self.graph.descendants([i]) - {i} - self.skipped)
        self.skipped.update(newly)
        return newly

    def idle(self) -> bool:
        return self.running == 0 and not any(self.heaps.values())
