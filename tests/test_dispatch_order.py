"""Critical-path-first dispatch, read from the dispatcher's event log.

``chain_and_shorts`` (tests.helpers.graphs), time-scaled by 0.2, at 2 slots:

    step_1 -> step_2 -> ... -> step_6      0.1 s each: priorities 0.6, 0.5, ... 0.1
    check_01  check_02  ...  check_12      0.05 s each: priority 0.05

Name order would favour the checks (``check_`` < ``step_``). The policy must not: each step
is dispatched as soon as it is ready, so between a step's ``ready`` and its ``dispatch``
no check is dispatched. This is a property of the order of decisions, not of timing, so
it holds on any runner and at any time scale.
"""
from __future__ import annotations

from dataclasses import replace

import pytest

from orchestrator.execution.dispatcher import Dispatcher
from orchestrator.flows.flow import run
from orchestrator.planning.graph import Graph
from orchestrator.planning.planner import make_plan
from runners.threads import ThreadRunner
from tests.helpers.graphs import chain_and_shorts
from tests.helpers.observers import EventLog
from tests.helpers.schedule import attempt_intervals, jumped_the_queue, max_overlap
from tests.prefect_fixtures import api, readback

SLOTS = 2
SCALE = 0.2


def scaled_graph() -> Graph:
    g = chain_and_shorts()
    return Graph([s.scaled(SCALE) for s in g], g.pools)


def chain_and_checks(graph: Graph) -> tuple[list[str], list[str]]:
    steps = [n for n in graph.names if n.startswith("step_")]
    checks = [n for n in graph.names if n.startswith("check_")]
    assert (len(steps), len(checks)) == (6, 12)
    return steps, checks


def dispatched(events) -> list[str]:
    return [name for _, kind, name in events if kind == "dispatch"]


def run_dispatcher(plan) -> Dispatcher:
    with ThreadRunner(workers=SLOTS) as runner:
        dispatcher = Dispatcher(plan, runner)
        dispatcher.run()
    return dispatcher


def test_dispatcher_never_makes_the_chain_wait_for_a_check():
    graph = scaled_graph()
    steps, checks = chain_and_checks(graph)
    dispatcher = run_dispatcher(make_plan(graph, SLOTS))
    assert {r.state for r in dispatcher.runs.values()} == {"completed"}
    assert jumped_the_queue(dispatcher.events, steps, checks) == []
    order = dispatched(dispatcher.events)
    assert sorted(order) == graph.names  # each dispatched exactly once
    assert [n for n in order if n in steps] == steps
    assert order[0] == "step_1"


def test_the_check_catches_name_order():
    """The same run with every priority equal (ties go to the smaller name) is name order:
    the checks go first and ``step_1`` waits for all twelve of them."""
    graph = scaled_graph()
    steps, checks = chain_and_checks(graph)
    plan = make_plan(graph, SLOTS)
    dispatcher = run_dispatcher(replace(plan, priority=[0.0] * len(graph), rank=[0.0] * len(graph)))
    jumps = jumped_the_queue(dispatcher.events, steps, checks)
    assert jumps and jumps[0].startswith("'step_1' waited while check_01, check_02, ")
    assert dispatched(dispatcher.events)[:12] == checks


# -- the same through run(), on the runners where a run is cheap --------------------------------
# Ray is left out: starting it costs 10-25 s here for a 1.2 s graph, and the order is the
# dispatcher's policy, the same whatever engine runs the bodies.

@pytest.fixture(scope="module", params=["threads", "processes", pytest.param("dask", marks=pytest.mark.dask)])
def order_runner(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def order_run(order_runner, prefect_server):
    graph = scaled_graph()
    log = EventLog()
    with api(prefect_server):
        report = run(graph, order_runner, max_concurrency=SLOTS, workers=SLOTS, observers=[log])
    return graph, report, log.events, prefect_server


def test_run_never_makes_the_chain_wait_for_a_check(order_run):
    graph, report, events, _ = order_run
    steps, checks = chain_and_checks(graph)
    assert (report["failed"], report["skipped"]) == ([], [])
    assert jumped_the_queue(events, steps, checks) == []
    assert [n for n in dispatched(events) if n in steps] == steps
    assert max_overlap(attempt_intervals(report)) <= SLOTS


def test_run_without_failures_is_a_completed_flow_run(order_run):
    graph, report, _, url = order_run
    rb = readback(url, report["flow_run_id"], graph.names)
    assert rb.flow_run.state.type.value == "COMPLETED"
    assert {n: tr.state.type.value for n, tr in rb.task_runs.items()} == {n: "COMPLETED" for n in graph.names}
