"""The dispatcher's retry policy for jobs whose worker died, on a scripted runner.

``ScriptedRunner`` implements the runner contract (``runners.base.Runner``) and runs nothing:
each job submitted for a service gets that service's next scripted reply through ``done``,
either at once (from inside ``submit``, on the dispatcher's thread) or from a thread of its
own, as a real engine would. It is a double of our own seam, not of Prefect or an engine.

    RestartedWorkerLost   killed by a worker restart critpath asked for: the same attempt is
                          sent again (no attempt counted, its slot kept), MAX_RESTART_RESENDS
                          times at most; after that it is a lost worker like any other
    WorkerLost            the infrastructure failed: one attempt more than the service's
                          retries, once per service

Assertions are on the jobs submitted (keys, in order), the services' states, attempts and
histories, and the dispatcher's event log; never on time.
"""
from __future__ import annotations

import threading

import pytest

from orchestrator.execution.dispatcher import MAX_RESTART_RESENDS, Dispatcher
from orchestrator.execution.events import Event
from orchestrator.planning.graph import Graph
from orchestrator.planning.model import Service
from orchestrator.planning.planner import make_plan
from runners.base import Job, Outcome, RestartedWorkerLost, WorkerLost

OK, FAIL = "ok", "fail"


def restarted() -> RestartedWorkerLost:
    return RestartedWorkerLost("killed by a worker restart critpath asked for")


def lost() -> WorkerLost:
    return WorkerLost("worker tcp://127.0.0.1:1 died")


class ScriptedRunner:
    """Replies to each job of service ``name`` with the next entry of ``script[name]``:
    ``"ok"``, ``"fail"`` (an ``Outcome`` either way) or an exception instance (an engine's
    report, e.g. a lost worker). ``threaded``: each reply comes from a new thread."""

    name = "scripted"

    def __init__(self, script: dict[str, list], capacity: int = 4, threaded: bool = False):
        self.capacity = capacity
        self.script = {name: list(replies) for name, replies in script.items()}
        self.threaded = threaded
        self.submitted: list[str] = []  # job keys, in the order they were submitted
        self.cancelled: list[str] = []
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> "ScriptedRunner":
        return self

    def __exit__(self, *exc) -> None:
        for t in self._threads:
            t.join()

    def submit(self, job: Job, priority: float, done):
        self.submitted.append(job.key)
        reply = self.script[job.name].pop(0)
        if reply in (OK, FAIL):
            ok = reply == OK
            reply = Outcome(job.key, ok, 1.0, 2.0, "scripted:1", error=None if ok else "ValueError: scripted")
        if self.threaded:
            t = threading.Thread(target=done, args=(reply,), name=f"reply-{job.key}")
            self._threads.append(t)
            t.start()
        else:
            done(reply)
        return job.key

    def cancel(self, handle) -> None:
        self.cancelled.append(handle)


@pytest.fixture(params=[False, True], ids=["inline", "threaded"])
def threaded(request) -> bool:
    return request.param


def dispatch(services: list[Service], script: dict[str, list], threaded: bool, max_concurrency: int = 2):
    """Runs ``services`` on a ScriptedRunner; (runner, dispatcher, runs by name). Every
    scripted reply must have been used."""
    graph = Graph(services)
    with ScriptedRunner(script, threaded=threaded) as runner:
        dispatcher = Dispatcher(make_plan(graph, max_concurrency), runner)
        runs = dispatcher.run()
    assert {n: r for n, r in runner.script.items() if r} == {}, "replies left unused"
    return runner, dispatcher, runs


def kinds(dispatcher: Dispatcher, name: str) -> list[Event]:
    return [e.kind for e in dispatcher.events if e.service == name]


def attempts(run) -> list[tuple[int, bool, bool]]:
    """(attempt, ok, lost) of each entry of the history."""
    return [(a.attempt, a.ok, a.lost) for a in run.history]


def test_a_job_killed_by_our_own_restart_is_sent_again_as_the_same_attempt(threaded):
    services = [Service("a", duration=0.01), Service("a_child", after=("a",), duration=0.01)]
    script = {"a": [restarted()] * MAX_RESTART_RESENDS + [OK], "a_child": [OK]}
    runner, dispatcher, runs = dispatch(services, script, threaded)
    assert runner.submitted == ["a#1"] * (MAX_RESTART_RESENDS + 1) + ["a_child#1"]
    a = runs["a"]
    assert (a.state, a.attempts, a.lost_worker) == ("completed", 1, False)
    assert attempts(a) == [(1, True, False)]
    assert kinds(dispatcher, "a") == [Event.READY, Event.DISPATCH, Event.COMPLETE]
    assert runs["a_child"].state == "completed"


def test_a_resent_job_keeps_its_slot(threaded):
    """One slot, a ranked before b: b is dispatched only once a's resent attempt completed."""
    services = [Service("a", duration=0.01, estimate=5.0), Service("b", duration=0.01, estimate=1.0)]
    script = {"a": [restarted(), restarted(), OK], "b": [OK]}
    runner, dispatcher, runs = dispatch(services, script, threaded, max_concurrency=1)
    assert runner.submitted == ["a#1", "a#1", "a#1", "b#1"]
    order = [(e.kind, e.service) for e in dispatcher.events if e.kind in (Event.DISPATCH, Event.COMPLETE)]
    assert order == [(Event.DISPATCH, "a"), (Event.COMPLETE, "a"), (Event.DISPATCH, "b"), (Event.COMPLETE, "b")]
    assert {n: (r.state, r.attempts) for n, r in runs.items()} == {"a": ("completed", 1), "b": ("completed", 1)}


def test_past_max_restart_resends_it_counts_as_a_lost_worker_with_one_more_attempt(threaded):
    """retries=0: the resends cost no attempt; the kill after them is a lost worker, which
    earns the second attempt."""
    services = [Service("a", duration=0.01, retries=0)]
    script = {"a": [restarted()] * (MAX_RESTART_RESENDS + 1) + [OK]}
    runner, dispatcher, runs = dispatch(services, script, threaded)
    assert runner.submitted == ["a#1"] * (MAX_RESTART_RESENDS + 1) + ["a#2"]
    a = runs["a"]
    assert (a.state, a.attempts, a.lost_worker) == ("completed", 2, True)
    assert attempts(a) == [(1, False, True), (2, True, False)]
    assert a.history[0].error.startswith("RestartedWorkerLost: "), a.history[0].error
    assert kinds(dispatcher, "a") == [Event.READY, Event.DISPATCH, Event.RETRY, Event.READY, Event.DISPATCH,
                                      Event.COMPLETE]


def test_each_attempt_gets_its_own_resends(threaded):
    """After the lost first attempt, the second is killed by restarts MAX_RESTART_RESENDS
    times too, and is still sent again each time."""
    services = [Service("a", duration=0.01)]
    script = {"a": [restarted()] * (MAX_RESTART_RESENDS + 1) + [restarted()] * MAX_RESTART_RESENDS + [OK]}
    runner, _, runs = dispatch(services, script, threaded)
    assert runner.submitted == ["a#1"] * (MAX_RESTART_RESENDS + 1) + ["a#2"] * (MAX_RESTART_RESENDS + 1)
    assert (runs["a"].state, runs["a"].attempts) == ("completed", 2)


def test_past_max_restart_resends_a_second_loss_fails_the_service(threaded):
    services = [Service("a", duration=0.01), Service("a_child", after=("a",), duration=0.01),
                Service("other", duration=0.01)]
    script = {"a": [restarted()] * (MAX_RESTART_RESENDS + 1) + [lost()], "other": [OK]}
    runner, dispatcher, runs = dispatch(services, script, threaded)
    assert runner.submitted.count("a#1") == MAX_RESTART_RESENDS + 1
    assert runner.submitted.count("a#2") == 1
    assert (runs["a"].state, runs["a"].attempts) == ("failed", 2)
    assert attempts(runs["a"]) == [(1, False, True), (2, False, True)]
    assert (runs["a_child"].state, runs["a_child"].skipped_because) == ("skipped", "a")
    assert runs["other"].state == "completed"
    assert Event.SKIP in kinds(dispatcher, "a_child")


def test_resends_do_not_turn_a_service_failure_into_a_lost_worker(threaded):
    """Killed by our restarts, then the body itself fails: one attempt, failed, not lost."""
    services = [Service("a", duration=0.01)]
    script = {"a": [restarted()] * MAX_RESTART_RESENDS + [FAIL]}
    runner, _, runs = dispatch(services, script, threaded)
    assert runner.submitted == ["a#1"] * (MAX_RESTART_RESENDS + 1)
    a = runs["a"]
    assert (a.state, a.attempts, a.lost_worker, a.error) == ("failed", 1, False, "ValueError: scripted")


def test_a_lost_worker_earns_one_more_attempt_even_with_no_retries(threaded):
    services = [Service("a", duration=0.01, retries=0)]
    runner, dispatcher, runs = dispatch(services, {"a": [lost(), OK]}, threaded)
    assert runner.submitted == ["a#1", "a#2"]
    a = runs["a"]
    assert (a.state, a.attempts, a.lost_worker) == ("completed", 2, True)
    assert attempts(a) == [(1, False, True), (2, True, False)]
    assert a.history[0].error == "WorkerLost: worker tcp://127.0.0.1:1 died"
    assert kinds(dispatcher, "a") == [Event.READY, Event.DISPATCH, Event.RETRY, Event.READY, Event.DISPATCH,
                                      Event.COMPLETE]


@pytest.mark.parametrize("retries", [0, 1, 2])
def test_lost_workers_earn_exactly_one_extra_attempt_in_all(threaded, retries):
    """Every attempt lost: the service fails after its retries plus one, not one more per loss."""
    services = [Service("a", duration=0.01, retries=retries), Service("a_child", after=("a",), duration=0.01)]
    script = {"a": [lost() for _ in range(retries + 2)]}
    runner, dispatcher, runs = dispatch(services, script, threaded)
    assert runner.submitted == [f"a#{n}" for n in range(1, retries + 3)]
    assert (runs["a"].state, runs["a"].attempts) == ("failed", retries + 2)
    assert runs["a_child"].state == "skipped"
    assert kinds(dispatcher, "a").count(Event.RETRY) == retries + 1
    assert kinds(dispatcher, "a")[-1] == Event.FAIL


def test_a_failure_after_a_lost_worker_uses_up_the_extra_attempt(threaded):
    """retries=1, attempt 1 lost, attempts 2 and 3 fail: three attempts, then failed."""
    services = [Service("a", duration=0.01, retries=1)]
    runner, _, runs = dispatch(services, {"a": [lost(), FAIL, FAIL]}, threaded)
    assert runner.submitted == ["a#1", "a#2", "a#3"]
    assert (runs["a"].state, runs["a"].attempts, runs["a"].lost_worker) == ("failed", 3, True)
    assert attempts(runs["a"]) == [(1, False, True), (2, False, False), (3, False, False)]


def test_without_a_lost_worker_a_failure_gets_only_its_retries(threaded):
    services = [Service("a", duration=0.01, retries=1)]
    runner, _, runs = dispatch(services, {"a": [FAIL, FAIL]}, threaded)
    assert runner.submitted == ["a#1", "a#2"]
    assert (runs["a"].state, runs["a"].attempts, runs["a"].lost_worker) == ("failed", 2, False)
