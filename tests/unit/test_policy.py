"""``ReadyQueue``, the selection policy shared by the planner's simulation and the dispatcher.

Each test builds a small graph, gives the priorities by hand (indices follow sorted names),
and asserts which services ``pop_startable`` hands out and in what order, as the limits,
completions and failures change. No runner, no clock.
"""
from __future__ import annotations

from orchestrator.planning.graph import Graph
from orchestrator.planning.policy import ReadyQueue
from tests.helpers.graphs import synth


def queue(graph: Graph, priority: dict[str, float], max_concurrency: int) -> ReadyQueue:
    return ReadyQueue(graph, [priority[n] for n in graph.names], max_concurrency)


def names(graph: Graph, indices: list[int]) -> list[str]:
    return [graph.names[i] for i in indices]


def pop(q: ReadyQueue) -> list[str]:
    return names(q.graph, q.pop_startable())


def test_highest_priority_first_ties_by_name():
    g = Graph([synth(n) for n in "abcde"])
    q = queue(g, {"a": 1.0, "b": 3.0, "c": 3.0, "d": 2.0, "e": 3.0}, max_concurrency=10)
    assert pop(q) == ["b", "c", "e", "d", "a"]
    assert pop(q) == []


def test_ties_go_to_the_smaller_name_whatever_the_declared_order():
    g = Graph([synth("z"), synth("m"), synth("a")])  # indices follow sorted names: a=0, m=1, z=2
    q = queue(g, dict.fromkeys("zma", 1.0), max_concurrency=10)
    assert pop(q) == ["a", "m", "z"]


def test_global_limit_hands_out_no_more_slots_than_it_has():
    g = Graph([synth(n) for n in "abcd"])
    q = queue(g, {"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0}, max_concurrency=2)
    assert pop(q) == ["a", "b"]
    assert (q.running, pop(q)) == (2, [])
    q.release(g.index["b"])
    assert pop(q) == ["c"]
    q.release(g.index["a"])
    q.release(g.index["c"])
    assert pop(q) == ["d"]
    assert q.running == 1


def test_pool_limit_holds_and_a_full_pool_does_not_block_the_others():
    """x, y in pool db (limit 1) lead; z (no pool) and w (pool api, limit 1) come after them."""
    g = Graph([synth("x", pool="db"), synth("y", pool="db"), synth("z"), synth("w", pool="api")],
              pools={"db": 1, "api": 1})
    q = queue(g, {"x": 9.0, "y": 8.0, "z": 1.0, "w": 2.0}, max_concurrency=10)
    assert pop(q) == ["x", "w", "z"]  # y waits for db; z and w are not held up behind it
    assert q.running_in == {None: 1, "db": 1, "api": 1}
    assert pop(q) == []
    q.release(g.index["x"])
    assert pop(q) == ["y"]
    assert q.running_in["db"] == 1


def test_a_full_pool_leaves_its_global_slot_to_the_next_service():
    g = Graph([synth("db_1", pool="db"), synth("db_2", pool="db"), synth("free")], pools={"db": 1})
    q = queue(g, {"db_1": 5.0, "db_2": 4.0, "free": 1.0}, max_concurrency=2)
    assert pop(q) == ["db_1", "free"]


def test_completed_readies_a_successor_once_its_last_upstream_completed():
    """a, b -> c -> d"""
    g = Graph([synth("a"), synth("b"), synth("c", after=["a", "b"]), synth("d", after=["c"])])
    q = queue(g, {"a": 3.0, "b": 3.0, "c": 2.0, "d": 1.0}, max_concurrency=4)
    assert pop(q) == ["a", "b"]
    q.release(g.index["a"])
    assert q.completed(g.index["a"]) == []
    assert pop(q) == []
    q.release(g.index["b"])
    assert names(g, q.completed(g.index["b"])) == ["c"]
    assert pop(q) == ["c"]
    q.release(g.index["c"])
    assert names(g, q.completed(g.index["c"])) == ["d"]
    assert pop(q) == ["d"]


def test_failed_skips_every_descendant_and_nothing_else():
    """a -> b -> c;  a -> d;  x -> d;  e"""
    g = Graph([synth("a"), synth("b", after=["a"]), synth("c", after=["b"]), synth("d", after=["a", "x"]),
               synth("e"), synth("x")])
    q = queue(g, dict.fromkeys(g.names, 1.0), max_concurrency=10)
    assert pop(q) == ["a", "e", "x"]
    q.release(g.index["a"])
    assert names(g, q.failed(g.index["a"])) == ["b", "c", "d"]  # in index order
    q.release(g.index["x"])
    assert q.completed(g.index["x"]) == []  # d was skipped: x's completion does not ready it
    assert pop(q) == []
    assert q.skipped == {g.index[n] for n in "bcd"}


def test_failed_does_not_skip_a_service_twice():
    """a -> c;  b -> c: both fail, c is skipped once."""
    g = Graph([synth("a"), synth("b"), synth("c", after=["a", "b"])])
    q = queue(g, dict.fromkeys(g.names, 1.0), max_concurrency=2)
    pop(q)
    assert names(g, q.failed(g.index["a"])) == ["c"]
    assert q.failed(g.index["b"]) == []


def test_push_makes_a_service_ready_again_for_its_retry():
    g = Graph([synth("a"), synth("b")])
    q = queue(g, {"a": 2.0, "b": 1.0}, max_concurrency=1)
    assert pop(q) == ["a"]
    q.release(g.index["a"])
    q.push(g.index["a"])  # a failed attempt, to be retried: it outranks b again
    assert pop(q) == ["a"]


def test_idle_only_when_nothing_is_ready_or_running():
    g = Graph([synth("a"), synth("b", after=["a"])])
    q = queue(g, {"a": 2.0, "b": 1.0}, max_concurrency=1)
    assert not q.idle()  # a is ready
    pop(q)
    assert not q.idle()  # a is running
    q.release(g.index["a"])
    q.completed(g.index["a"])
    assert not q.idle()  # b is ready
    pop(q)
    q.release(g.index["b"])
    q.completed(g.index["b"])
    assert q.idle()


def test_idle_after_a_failure_skipped_the_rest():
    g = Graph([synth("a"), synth("b", after=["a"])])
    q = queue(g, {"a": 2.0, "b": 1.0}, max_concurrency=1)
    pop(q)
    q.release(g.index["a"])
    q.failed(g.index["a"])
    assert q.idle()
