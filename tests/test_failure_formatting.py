"""Failures reported as what they are, on every runner: an exception that cannot be printed.

    str_broken   raises an exception whose __str__ raises              retries=0
    repr_broken  raises one whose __str__ and __repr__ both raise      retries=0
    str_broken -> str_broken_child;  fine

Such an exception used to kill the processes runner's worker (reported as a lost worker and
retried despite ``retries=0``) and to become ``RuntimeError: __str__ exploded`` on threads and
Dask, losing its type and traceback. The worker formats it defensively: its type name,
whatever of its message can be had, its traceback; the outcome still pickles.

One refresh per runner (``runner_name``, module-scoped), driven by the dispatcher directly.
Nothing asserts a duration.
"""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from orchestrator.execution.dispatcher import Dispatcher
from orchestrator.planning.graph import Graph
from orchestrator.planning.model import Service
from orchestrator.planning.planner import make_plan
from runners import make_runner

BODIES = "tests.helpers.worker_faults"
BROKEN = {"str_broken": ("Unprintable", "str"), "repr_broken": ("Unrepresentable", "repr")}


@pytest.fixture(scope="module")
def broken(runner_name):
    graph = Graph([
        *[Service(name, call=f"{BODIES}:raise_unprintable", params={"kind": kind}, retries=0)
          for name, (_, kind) in BROKEN.items()],
        Service("str_broken_child", after=("str_broken",), duration=0.05),
        Service("fine", duration=0.05),
    ])
    with make_runner(runner_name, 2) as runner:
        dispatcher = Dispatcher(make_plan(graph, 2), runner)
        runs = dispatcher.run()
    return SimpleNamespace(runner=runner_name, runs=runs, events=dispatcher.events)


@pytest.mark.parametrize("name", list(BROKEN))
def test_an_unprintable_exception_fails_its_service_once(broken, name):
    """Failed after exactly one attempt (``retries=0``), not a lost worker: the worker survived
    the exception, and the failure is the service's own."""
    run = broken.runs[name]
    assert (run.state, run.attempts, run.lost_worker) == ("failed", 1, False), (run.error, run.history)
    assert [a.lost for a in run.history] == [False]


@pytest.mark.parametrize("name", list(BROKEN))
def test_its_error_names_its_own_type_and_what_could_be_had(broken, name):
    kind, _ = BROKEN[name]
    error = broken.runs[name].error
    assert error.startswith(f"{kind}: "), error
    assert "__str__ exploded" not in error.split(" (its str() raised")[0]  # never the formatting's own failure
    assert "its str() raised RuntimeError" in error, error
    if kind == "Unprintable":  # repr() still works: the message is there
        assert "disk full" in error, error
    else:  # neither str() nor repr(): the arguments are
        assert "'disk full'" in error, error


@pytest.mark.parametrize("name", list(BROKEN))
def test_its_traceback_is_kept(broken, name):
    tb = broken.runs[name].traceback
    assert tb and tb.startswith("Traceback (most recent call last):"), tb
    assert "raise_unprintable" in tb, tb  # the frame that raised
    assert BROKEN[name][0] in tb.strip().splitlines()[-1], tb


def test_the_rest_of_the_refresh_is_unaffected(broken):
    assert broken.runs["str_broken_child"].state == "skipped"
    assert broken.runs["fine"].state == "completed"
