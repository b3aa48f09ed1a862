"""Queue-ahead in ``policy.ReadyQueue``: what may be handed to an engine beyond the limit.

    a (prio 5)  b (4)  c (3, timeout)  d (2)        pool "db" limit 1:  p1 (9), p2 (8)

At 2 slots with 2 queued ahead, the best four go, in priority order, but queue-ahead
stops at the first service with a timeout (its clock would run while it waits), and a
pool never has more services sent than its limit.
"""
from __future__ import annotations

from orchestrator.graph import Graph
from orchestrator.model import Service
from orchestrator.policy import ReadyQueue


def queue(services, priority, slots, ahead, pools=None):
    g = Graph(services, pools or {})
    may_queue = [not g.services[n].timeout for n in g.names]
    return g, ReadyQueue(g, [priority[n] for n in g.names], slots, ahead, may_queue)


def names(g, indices):
    return [g.names[i] for i in indices]


def test_queue_ahead_takes_the_next_best_in_priority_order():
    g, q = queue([Service(n, duration=1) for n in "abcd"], dict(a=5, b=4, c=3, d=2), 2, 2)
    assert names(g, q.pop_startable()) == ["a", "b", "c", "d"]
    assert q.running == 4 and q.pop_startable() == []


def test_without_queue_ahead_only_the_limit_starts():
    g, q = queue([Service(n, duration=1) for n in "abcd"], dict(a=5, b=4, c=3, d=2), 2, 0)
    assert names(g, q.pop_startable()) == ["a", "b"]
    q.release(g.index["a"])
    assert names(g, q.pop_startable()) == ["c"]


def test_queue_ahead_stops_at_a_service_with_a_timeout():
    services = [Service("a", duration=1), Service("b", duration=1), Service("c", duration=1, timeout=5),
                Service("d", duration=1)]
    g, q = queue(services, dict(a=5, b=4, c=3, d=2), 2, 2)
    assert names(g, q.pop_startable()) == ["a", "b"]  # d must not overtake c
    q.release(g.index["a"])
    assert names(g, q.pop_startable()) == ["c", "d"]  # c gets a real slot, then d queues ahead


def test_queue_ahead_never_exceeds_a_pool_limit():
    services = [Service("p1", duration=1, pool="db"), Service("p2", duration=1, pool="db"),
                Service("a", duration=1), Service("b", duration=1)]
    g, q = queue(services, dict(p1=9, p2=8, a=5, b=4), 2, 8, {"db": 1})
    assert names(g, q.pop_startable()) == ["p1", "a", "b"]
    assert q.running_in["db"] == 1
