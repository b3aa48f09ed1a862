"""On threads, a body that holds the GIL past its timeout keeps the dispatcher's timer from firing;
when it finally returns it must be reported as timed out, never completed (issue 10 §4)."""
from __future__ import annotations

from orchestrator.execution.dispatcher import Dispatcher
from orchestrator.planning.graph import Graph
from orchestrator.planning.model import Service
from orchestrator.planning.planner import make_plan
from runners.threads import ThreadRunner


def test_a_body_that_held_the_gil_past_its_timeout_is_not_completed():
    g = Graph([Service("regex", call="tests.helpers.worker_faults:hold_the_gil", params={"letters": 26},
                       timeout=0.5),
               Service("after", after=("regex",), duration=0.01)])
    with ThreadRunner(2) as runner:
        runs = Dispatcher(make_plan(g, 2), runner).run()
    regex = runs["regex"]
    assert regex.state == "failed" and regex.attempts == 1
    assert regex.error.startswith("TimeoutError: attempt 1 of 'regex' exceeded its timeout of 0.5 s")
    assert runs["after"].state == "skipped"
