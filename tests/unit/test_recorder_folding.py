"""Which Running states the bookkeeping process folds into their final state (issue 15): a first
attempt's, when its end comes within the hold; nothing else, and nothing is lost or reordered
within a service."""
from __future__ import annotations

from orchestrator.execution.events import Event
from orchestrator.flows.recorder_process import Held


def ev(kind, name, attempt=1):
    return ("event", (kind, name, 0.0, attempt, None, {}))


def said(pairs):
    """The messages announced, as (kind, service) or the message's name."""
    return [(m[1][0].value, m[1][1]) if m[0] == "event" else m[0] for m, say in pairs if say]


def applied(pairs):
    return [(m[1][0].value, m[1][1]) if m[0] == "event" else m[0] for m, _ in pairs]


def through(held, timed):
    """``timed``: (message, arrival time) in order; every pair applied, the due ones as time passes."""
    out = []
    for msg, now in timed:
        out += held.due(now)
        out += held.take(msg, now)
    return out


def test_a_dispatch_whose_end_comes_within_the_hold_is_applied_but_not_announced():
    out = through(Held(0.25), [(ev(Event.READY, "a"), 0.0), (ev(Event.DISPATCH, "a"), 0.0),
                               (ev(Event.COMPLETE, "a"), 0.2), (("end",), 0.3)])
    assert applied(out) == [("ready", "a"), ("dispatch", "a"), ("complete", "a"), "end"]
    assert said(out) == [("ready", "a"), ("complete", "a"), "end"]


def test_a_dispatch_is_announced_once_the_hold_is_up_before_anything_later():
    held = Held(0.25)
    out = through(held, [(ev(Event.DISPATCH, "long"), 0.0), (ev(Event.DISPATCH, "short"), 0.1)])
    assert out == [] and abs(held.wait_s(0.1) - 0.15) < 1e-9
    out += held.due(0.25)  # the long one's time is up; the short one's is not
    out += through(held, [(ev(Event.COMPLETE, "short"), 0.3), (ev(Event.COMPLETE, "long"), 2.0)])
    assert said(out) == [("dispatch", "long"), ("complete", "short"), ("complete", "long")]
    assert held.wait_s(2.0) is None


def test_failures_and_cancels_fold_but_a_retry_and_later_attempts_do_not():
    out = through(Held(0.25), [(ev(Event.DISPATCH, "f"), 0), (ev(Event.FAIL, "f"), 0), (ev(Event.DISPATCH, "c"), 0),
                               (ev(Event.CANCEL, "c"), 0), (ev(Event.DISPATCH, "r"), 0), (ev(Event.RETRY, "r"), 0),
                               (ev(Event.DISPATCH, "r", 2), 0), (ev(Event.COMPLETE, "r", 2), 0)])
    assert said(out) == [("fail", "f"), ("cancel", "c"), ("dispatch", "r"), ("retry", "r"),
                         ("dispatch", "r"), ("complete", "r")]


def test_the_end_and_an_abandon_first_let_out_every_held_dispatch():
    for last in (("end",), ("abandon", "the API does not answer")):
        held = Held(10.0)
        out = through(held, [(ev(Event.DISPATCH, "a"), 0), (ev(Event.DISPATCH, "b"), 0), (last, 0.1)])
        assert said(out) == [("dispatch", "a"), ("dispatch", "b"), last[0]]
        assert held.wait_s(0.1) is None


def test_with_no_hold_only_an_end_read_in_the_same_batch_folds():
    held = Held(0.0)
    batch = held.take(ev(Event.DISPATCH, "a"), 5.0) + held.take(ev(Event.COMPLETE, "a"), 5.0) + held.due(5.0)
    assert said(batch) == [("complete", "a")]
    alone = held.take(ev(Event.DISPATCH, "b"), 6.0) + held.due(6.0)
    assert said(alone) == [("dispatch", "b")]
