"""Dispatcher behaviours not tied to an engine, on the threads runner.

Assertions are on the dispatcher's own state and event log, never on elapsed time.
"""
from __future__ import annotations

from orchestrator.execution.dispatcher import Dispatcher
from orchestrator.planning.graph import Graph
from orchestrator.planning.model import Service
from orchestrator.planning.planner import make_plan
from runners.threads import ThreadRunner


def test_finished_services_timeouts_do_not_keep_the_run_alive():
    """a (timeout 600 s) -> b (timeout 300 s): both finish in 0.1 s; run() returns while
    their timeout timers are still pending, i.e. it did not wait for them."""
    g = Graph([Service("a", duration=0.05, timeout=600), Service("b", after=("a",), duration=0.05, timeout=300)])
    with ThreadRunner(2) as runner:
        d = Dispatcher(make_plan(g, 2), runner)
        runs = d.run()
    assert {n: r.state for n, r in runs.items()} == {"a": "completed", "b": "completed"}
    assert sorted(t.kind for t in d._timers) == ["timeout", "timeout"]


def test_retry_delay_keeps_the_run_alive_until_the_retry_ran():
    """A service that always fails, retries=1 with a delay: the run waits for the retry."""
    g = Graph([Service("bad", call="json:loads", params={"s": "{"}, retries=1, retry_delay=0.2)])
    with ThreadRunner(1) as runner:
        d = Dispatcher(make_plan(g, 1), runner)
        runs = d.run()
    assert runs["bad"].state == "failed" and runs["bad"].attempts == 2
    kinds = [k for _, k, name in d.events if name == "bad"]
    assert kinds == ["ready", "dispatch", "retry", "ready", "dispatch", "fail"]


def test_cancel_before_run_dispatches_nothing():
    g = Graph([Service("a", duration=0.05), Service("b", after=("a",), duration=0.05)])
    with ThreadRunner(1) as runner:
        d = Dispatcher(make_plan(g, 1), runner)
        d.cancel("stop")
        runs = d.run()
    assert d.cancelled == "stop"
    assert not [e for e in d.events if e[1] == "dispatch"]
    assert {r.state for r in runs.values()} == {"ready", "waiting"}
