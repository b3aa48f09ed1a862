"""Pools shared across refreshes, on the dispatcher's side (``execution.sharing``).

``Store`` is an in-memory ``SharedSlots``: a limit per pool, some slots held by "another
refresh" until it has refused this one a given number of times, and checks on every call:
the slots held never exceed the limit, and this refresh holds a lease only for a service that
is starting or running (none for a service still waiting on its upstreams). The Prefect
side of the same seam (global concurrency limits with leases) is tested against a real server
in tests/test_shared_pools.py.
"""
from __future__ import annotations

import threading
import time

from orchestrator.execution.dispatcher import Dispatcher
from orchestrator.execution.events import Event
from orchestrator.execution.sharing import Busy, Lease, PoolWait
from orchestrator.planning.graph import Graph
from orchestrator.planning.model import Service
from orchestrator.planning.planner import make_plan
from orchestrator.planning.policy import ReadyQueue
from runners.base import Outcome


class Store:
    def __init__(self, limits: dict[str, int], others: dict[str, int] | None = None, refusals: int = 2):
        self.limits = limits
        self.others = dict(others or {})  # slots another refresh holds, per pool
        self.refusals_left = refusals  # the other refresh lets go after this many refusals
        self.mine: dict[str, Lease] = {}
        self.taken: list[str] = []  # pool of each lease given, in order
        self.refused: list[str] = []
        self.peak: dict[str, int] = {}
        self.dispatcher: Dispatcher | None = None
        self._n = 0
        self._lock = threading.Lock()

    def held(self, pool: str) -> int:
        return self.others.get(pool, 0) + sum(1 for lease in self.mine.values() if lease.pool == pool)

    def take(self, pool: str) -> Lease | Busy:
        with self._lock:
            d = self.dispatcher
            assert len(d.shared.held) == len(self.mine)
            for i in d.shared.held:  # each lease is a started (or starting) service's, none a waiting one's
                name = d.graph.names[i]
                assert d.runs[name].state in ("ready", "running"), (name, d.runs[name].state)
                assert all(d.runs[d.graph.names[p]].state == "completed" for p in d.graph.preds[i]), name
            if self.held(pool) >= self.limits[pool]:
                self.refused.append(pool)
                self.refusals_left -= 1
                if self.refusals_left <= 0:
                    self.others.clear()
                return Busy(0.01)
            self._n += 1
            lease = Lease(pool, str(self._n))
            self.mine[lease.id] = lease
            self.taken.append(pool)
            self.peak[pool] = max(self.peak.get(pool, 0), self.held(pool))
            return lease

    def give_back(self, lease: Lease) -> None:
        with self._lock:
            assert self.mine.pop(lease.id, None) is not None, f"lease {lease.id} given back twice"


class SlowRunner:
    """Every job completes (or fails, for names in ``fail``) from a thread of its own, a little
    later, so that several are in flight at once."""

    name = "slow"
    capacity = 4

    def __init__(self, fail: set[str] = frozenset(), hang: set[str] = frozenset()):
        self.fail, self.hang = set(fail), set(hang)
        self.submitted: list[str] = []
        self.threads: list[threading.Thread] = []

    def submit(self, job, priority, done):
        self.submitted.append(job.name)
        if job.name in self.hang:
            return job.key

        def finish():
            time.sleep(0.02)  # keeps jobs overlapping; nothing below depends on how long
            ok = job.name not in self.fail
            done(Outcome(job.key, ok, time.time(), time.time(), "slow:1", error=None if ok else "ValueError: no"))

        t = threading.Thread(target=finish)
        self.threads.append(t)
        t.start()
        return job.key

    def cancel(self, handle) -> None:
        pass


def run(services, store: Store, runner: SlowRunner, pools: dict[str, int], limit: int = 4) -> Dispatcher:
    graph = Graph(services, pools)
    dispatcher = Dispatcher(make_plan(graph, limit), runner, shared=store)
    store.dispatcher = dispatcher
    dispatcher.run()
    for t in runner.threads:
        t.join()
    return dispatcher


def test_a_busy_shared_pool_holds_up_only_its_own_services_and_never_exceeds_its_limit():
    services = [Service(f"w{k}", pool="wh", estimate=10 - k, duration=0.01) for k in range(4)]
    services += [Service(f"x{k}", estimate=1, duration=0.01) for k in range(3)]
    store = Store({"wh": 2}, others={"wh": 2}, refusals=3)
    runner = SlowRunner()
    d = run(services, store, runner, {"wh": 2})
    assert all(r.state == "completed" for r in d.runs.values())
    # the unpooled services did not wait for the warehouse: they went first, though less critical
    assert set(runner.submitted[:3]) == {"x0", "x1", "x2"}
    assert [n for n in runner.submitted if n.startswith("w")] == ["w0", "w1", "w2", "w3"]  # most critical first
    assert store.refused and store.peak["wh"] <= 2
    assert store.mine == {}  # every lease given back
    waited = {n: s for n, s in ((n, d.shared.waited.get(d.graph.index[n], 0.0)) for n in d.graph.names)}
    assert waited["w0"] > 0 and waited["x0"] == 0


def test_a_failed_attempt_gives_its_slot_back_and_its_retry_takes_another():
    services = [Service("a", pool="wh", retries=2, duration=0.01), Service("b", pool="wh", after=("a",), duration=0.01)]
    store = Store({"wh": 1})
    runner = SlowRunner(fail={"a"})
    d = run(services, store, runner, {"wh": 1})
    assert runner.submitted == ["a", "a", "a"]
    assert (d.runs["a"].state, d.runs["b"].state) == ("failed", "skipped")
    assert store.taken == ["wh"] * 3 and store.mine == {}  # none for b, which never became ready


def test_a_cancelled_run_gives_back_what_its_running_services_held():
    services = [Service("a", pool="wh", duration=0.01), Service("b", pool="wh", duration=0.01)]
    store = Store({"wh": 2})
    runner = SlowRunner(hang={"a", "b"})
    graph = Graph(services, {"wh": 2})
    d = Dispatcher(make_plan(graph, 2), runner, shared=store)
    store.dispatcher = d
    threading.Timer(0.2, d.cancel, args=("test",)).start()
    d.run()
    assert store.taken == ["wh", "wh"] and store.mine == {}
    assert [e.service for e in d.events if e.kind is Event.CANCEL] == ["a", "b"]


def test_the_ready_queue_closes_a_refused_pool_for_the_round_and_keeps_its_service():
    graph = Graph([Service("w", pool="wh", estimate=5), Service("x", estimate=1)], {"wh": 3})
    q = ReadyQueue(graph, [5.0, 1.0], 2)
    asked = []

    def gate(i):
        asked.append(graph.names[i])
        return graph.names[i] != "w"

    assert [graph.names[i] for i in q.pop_startable(gate)] == ["x"]
    assert asked == ["w", "x"]  # asked once for the refused pool in one round
    assert [graph.names[i] for i in q.pop_startable(lambda i: True)] == ["w"]  # still ready


def test_a_pools_wait_counts_only_while_the_service_was_ready():
    wait = PoolWait(since=None, spans=[(0.0, 10.0), (20.0, 25.0)])
    assert wait.overlap(5.0, 22.0) == 5.0 + 2.0
    wait.since = 30.0
    assert wait.overlap(28.0, 31.0) == 1.0
