"""A service that cannot even start on its worker fails alone, and costs the run nothing else.

One refresh per runner (max_concurrency=2, workers=2):

    unpicklable -> unpicklable_child  params hold a lock: no engine can send it to a process
                                      (estimate 10: dispatched first, beside ghost)
    ghost -> ghost_child              'ghost' exists in this process only (set at run time),
                                      like a worker on older code: importing it fails there
    gate -> meet_a, meet_b            after the failures, the two meets must run at the same
                                      time (each waits for the other): both workers are still there
    fine -> fine_child

On processes, Dask and Ray, unpicklable and ghost fail, their children are skipped, the
rest completes. Threads run in this process: nothing is pickled and ghost resolves, so
everything completes there.

A call to a function missing everywhere never reaches a runner (``run()`` rejects the graph
up front, see test_contract), so the dispatcher's own handling of it is checked directly.
"""
from __future__ import annotations

import re
import threading

import pytest

import tests.helpers.services as bodies
from orchestrator.execution.dispatcher import Dispatcher
from orchestrator.execution.events import Event
from orchestrator.flows.flow import run
from orchestrator.planning.graph import Graph
from orchestrator.planning.model import Service
from orchestrator.planning.planner import make_plan
from runners import make_runner
from runners.threads import ThreadRunner
from tests.helpers.observers import EventLog
from tests.prefect_fixtures import api

HELPERS = "tests.helpers.services"
MEET_S = 5.0  # how long a meet waits for its partner: only spent when a worker went missing
#: bounds the wait for a run of two tiny services: only keeps a dispatcher that hung from hanging
#: the test; what is asserted is the order of its decisions, not how long they took
HANG_BOUND_S = 120.0


def unpicklable(name: str, **fields) -> Service:
    return Service(name, call=f"{HELPERS}:accept", params={"lock": threading.Lock()}, **fields)


def broken_graph(tmp) -> Graph:
    meet = {"seconds": MEET_S}
    return Graph([
        unpicklable("unpicklable", estimate=10.0),
        Service("unpicklable_child", after=("unpicklable",), duration=0.05),
        Service("ghost", call=f"{HELPERS}:ghost", estimate=9.0),
        Service("ghost_child", after=("ghost",), duration=0.05),
        Service("gate", duration=0.05, estimate=2.0),
        Service("meet_a", after=("gate",), call=f"{HELPERS}:rendezvous",
                params={**meet, "me": str(tmp / "a"), "other": str(tmp / "b")}),
        Service("meet_b", after=("gate",), call=f"{HELPERS}:rendezvous",
                params={**meet, "me": str(tmp / "b"), "other": str(tmp / "a")}),
        Service("fine", duration=0.05),
        Service("fine_child", after=("fine",), duration=0.05),
    ])


@pytest.fixture(scope="module")
def broken_run(runner_name, prefect_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"isolation-{runner_name}")
    bodies.ghost = bodies.accept  # validate() imports in this process and finds it
    try:
        with api(prefect_server):
            return runner_name, run(broken_graph(tmp), runner_name, max_concurrency=2, workers=2)
    finally:
        del bodies.ghost


def test_healthy_services_are_untouched(broken_run):
    _, report = broken_run
    got = {n: (report["services"][n]["state"], report["services"][n]["attempts"]) for n in ("fine", "fine_child", "gate")}
    assert got == {n: ("completed", 1) for n in got}


def test_unsendable_or_unimportable_services_fail_alone(broken_run):
    runner, report = broken_run
    if runner == "threads":
        assert (report["failed"], report["skipped"]) == ([], [])
        return
    states = {n: report["services"][n]["state"] for n in ("ghost", "ghost_child", "unpicklable", "unpicklable_child")}
    assert states == {"ghost": "failed", "ghost_child": "skipped", "unpicklable": "failed",
                      "unpicklable_child": "skipped"}
    ghost = report["services"]["ghost"]["error"]
    assert ghost == f"AttributeError: module {HELPERS!r} has no attribute 'ghost'"
    unsendable = report["services"]["unpicklable"]
    assert unsendable["attempts"] == 1
    assert unsendable["error"].startswith("TypeError") and re.search(r"pickle|serializ", unsendable["error"])
    assert not unsendable["lost_worker"]  # the service's fault, not the infrastructure's


def test_a_failed_send_keeps_every_worker(broken_run, request):
    runner, report = broken_run
    meets = {n: (report["services"][n]["state"], report["services"][n]["error"]) for n in ("meet_a", "meet_b")}
    assert meets == {"meet_a": ("completed", None), "meet_b": ("completed", None)}
    if runner != "threads":
        assert report["failed"] == ["ghost", "unpicklable"]
        assert report["skipped"] == ["ghost_child", "unpicklable_child"]


@pytest.mark.parametrize("runner_name", ["threads", "processes",
                                         pytest.param("dask", marks=pytest.mark.dask),
                                         pytest.param("ray", marks=pytest.mark.ray)])
def test_a_send_failure_in_the_only_slot_does_not_stall_the_run(runner_name, request):
    """With one slot, ``unpicklable`` is dispatched first and fails inside ``submit``; its
    slot is free again at once, and ``after`` must get it: ``after`` is dispatched only once
    ``unpicklable`` ended, and the run ends with both settled."""
    graph = Graph([unpicklable("unpicklable", estimate=10.0), Service("after", duration=0.05)])
    log = EventLog()
    finished = threading.Event()

    def run_dispatcher():
        try:
            dispatcher.run()
        finally:
            finished.set()

    with make_runner(runner_name, 1) as runner:
        dispatcher = Dispatcher(make_plan(graph, 1), runner, observers=[log])
        worker = threading.Thread(target=run_dispatcher, daemon=True, name="dispatcher-under-test")
        worker.start()
        # if it hung, this thread stays blocked on its inbox (a daemon, harmless) and the runner closes
        returned = finished.wait(HANG_BOUND_S)
        runs = dispatcher.runs  # by name
        states = {n: r.state for n, r in runs.items()}
    assert returned, f"the dispatcher never returned: {states}, events {log.events}"
    unpicklable_ends = Event.COMPLETE if runner_name == "threads" else Event.FAIL
    assert [(kind, name) for _, kind, name in log.events if kind in (Event.DISPATCH, Event.COMPLETE, Event.FAIL)] \
        == [(Event.DISPATCH, "unpicklable"), (unpicklable_ends, "unpicklable"), (Event.DISPATCH, "after"),
            (Event.COMPLETE, "after")]
    assert states["after"] == "completed"
    assert states["unpicklable"] == ("completed" if runner_name == "threads" else "failed")
    assert {n: r.attempts for n, r in runs.items()} == {"unpicklable": 1, "after": 1}


def test_a_missing_function_fails_only_its_service_in_the_dispatcher():
    graph = Graph([
        Service("nowhere", call=f"{HELPERS}:no_such_function"),
        Service("nowhere_child", after=("nowhere",), duration=0.01),
        Service("fine", duration=0.01),
        Service("fine_child", after=("fine",), duration=0.01),
    ])
    with ThreadRunner(workers=2) as runner:
        runs = Dispatcher(make_plan(graph, 2), runner).run()
    assert {n: r.state for n, r in runs.items()} == {
        "nowhere": "failed", "nowhere_child": "skipped", "fine": "completed", "fine_child": "completed"}
    assert runs["nowhere"].error == f"AttributeError: module {HELPERS!r} has no attribute 'no_such_function'"
    assert runs["nowhere"].attempts == 1
