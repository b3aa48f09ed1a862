"""Which dispatches the bookkeeping process folds into their final state (issue 15): a first
attempt's, when its end was read in the same batch; nothing else."""
from __future__ import annotations

from orchestrator.execution.events import Event
from orchestrator.flows.recorder_process import folded


def ev(kind, name, attempt=1):
    return ("event", (kind, name, 0.0, attempt, None, {}))


def announced(batch):
    return [(m[1][0].value, m[1][1]) if m[0] == "event" else m[0] for m, say in folded(batch) if say]


def test_a_dispatch_whose_end_came_with_it_is_not_announced():
    batch = [ev(Event.READY, "a"), ev(Event.DISPATCH, "a"), ev(Event.COMPLETE, "a"), ("end",)]
    assert announced(batch) == [("ready", "a"), ("complete", "a"), "end"]


def test_failures_and_cancels_fold_too_but_a_retry_does_not():
    batch = [ev(Event.DISPATCH, "f"), ev(Event.FAIL, "f"), ev(Event.DISPATCH, "c"), ev(Event.CANCEL, "c"),
             ev(Event.DISPATCH, "r"), ev(Event.RETRY, "r"), ev(Event.DISPATCH, "r", 2), ev(Event.COMPLETE, "r", 2)]
    assert announced(batch) == [("fail", "f"), ("cancel", "c"), ("dispatch", "r"), ("retry", "r"),
                                ("dispatch", "r"), ("complete", "r")]


def test_a_child_that_keeps_up_announces_every_state():
    assert announced([ev(Event.DISPATCH, "a")]) == [("dispatch", "a")]
    assert announced([ev(Event.DISPATCH, "a"), ev(Event.COMPLETE, "b")]) == [("dispatch", "a"), ("complete", "b")]
