"""The ledger's hand-over to a resumed run, its attempts' journal, ``last-run-id`` as read by
``--resume``, and the state folder's lock (``orchestrator.execution.ledger``).

Events are fed to ``Ledger.on_event`` by hand, as the dispatcher would. A crash in the middle of
the hand-over is simulated by making one of its file operations raise, as a SIGKILL there
would end it; whatever the moment, ``last-run-id`` must name a ledger that holds every
completion so far.
"""
from __future__ import annotations

import json
import os
import threading

import pytest

from orchestrator.execution import ledger as ledger_module
from orchestrator.execution.events import Event, ServiceRun
from orchestrator.execution.ledger import Ledger, LockHeld, StateLock, completed_in, read_run
from orchestrator.planning.errors import CritpathError


def completed(name: str) -> ServiceRun:
    return ServiceRun(name, state="completed", attempts=1, start=1.0, end=2.0, worker="w")


def attempt(name: str, n: int = 1) -> ServiceRun:
    return ServiceRun(name, state="running", attempts=n)


def a_run(state, *, done=(), in_flight=(), resumed=(), finish: str | None = None) -> Ledger:
    """A finished (closed) ledger: ``done`` dispatched and completed, ``in_flight`` dispatched only."""
    with Ledger(state, resumed=resumed) as ledger:
        for name in [*done, *in_flight]:
            ledger.on_event(Event.DISPATCH, attempt(name), 0.0, attempt=1)
        for name in done:
            ledger.on_event(Event.COMPLETE, completed(name), 0.0)
        if finish:
            ledger.finish(finish)
    return ledger


class Killed(BaseException):
    """Stands for a SIGKILL: nothing after it runs."""


# -- the hand-over ------------------------------------------------------------------------

def test_a_resumed_run_carries_every_completion_over_before_it_is_named_the_last_run(tmp_path):
    first = a_run(tmp_path, done=["a", "c"], in_flight=["b"])
    second = a_run(tmp_path, resumed=sorted(completed_in(tmp_path, None)[1]))
    assert (tmp_path / "last-run-id").read_text() == second.run_id + "\n"
    assert [json.loads(line) for line in second.path.read_text().splitlines()] == [
        {"service": "a", "resumed": True}, {"service": "c", "resumed": True}]
    assert completed_in(tmp_path, None) == (second.run_id, {"a", "c"})
    assert first.run_id != second.run_id


@pytest.mark.parametrize("fail_at", range(12))
def test_a_kill_anywhere_in_the_hand_over_leaves_last_run_id_on_a_complete_ledger(tmp_path, monkeypatch, fail_at):
    """The kill comes just before the ``fail_at``-th file operation of the hand-over (an
    ``os.open``, an ``os.replace`` or an atomic write, the atomic writes' own opens and
    renames included); past the last one, the hand-over is whole."""
    done = [f"s{i:03d}" for i in range(200)]
    old = a_run(tmp_path, done=done)
    calls: list[str] = []

    def step(real):
        def wrapped(*args, **kwargs):
            if len(calls) == fail_at:
                raise Killed()
            calls.append(real.__name__)
            return real(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(ledger_module, "write_text", step(ledger_module.write_text))
    monkeypatch.setattr(os, "open", step(os.open))
    monkeypatch.setattr(os, "replace", step(os.replace))
    killed = False
    try:
        with Ledger(tmp_path, resumed=done) as new:
            pass
    except Killed:
        killed = True
    monkeypatch.undo()
    assert killed == (fail_at < 11), calls  # 3 atomic writes (each: itself, its open, its replace), 2 opens
    run_id, names = completed_in(tmp_path, None)
    assert names == set(done)
    assert run_id == (old.run_id if killed else new.run_id)


def test_the_new_ledger_is_whole_when_last_run_id_names_it(tmp_path, monkeypatch):
    old = a_run(tmp_path, done=["a", "b", "c"])
    seen = {}
    real = ledger_module.write_text

    def spy(path, text):
        if path.name == "last-run-id":
            seen["ledger"] = (path.parent / "runs" / text.strip() / "ledger.jsonl").read_text()
        return real(path, text)

    monkeypatch.setattr(ledger_module, "write_text", spy)
    with Ledger(tmp_path, resumed=["a", "b", "c"]) as new:
        pass
    assert new.run_id != old.run_id
    assert [json.loads(line)["service"] for line in seen["ledger"].splitlines()] == ["a", "b", "c"]


def test_a_resumed_run_that_is_resumed_again_still_has_everything(tmp_path):
    """a, c complete; a resume selects only b (a, c carried over regardless); b completes;
    the resume of that run has a, b and c."""
    a_run(tmp_path, done=["a", "c"], in_flight=["b"], finish="failed")
    second = a_run(tmp_path, resumed=completed_in(tmp_path, None)[1], done=["b"], finish="completed")
    assert completed_in(tmp_path, None) == (second.run_id, {"a", "b", "c"})


# -- the attempts' journal and what was in flight ------------------------------------------

def test_dispatches_go_to_the_journal_and_the_ledger_keeps_one_line_per_completion(tmp_path):
    with Ledger(tmp_path) as ledger:
        ledger.on_event(Event.DISPATCH, attempt("a"), 0.0, attempt=1)
        ledger.on_event(Event.RETRY, attempt("a"), 0.0)
        ledger.on_event(Event.DISPATCH, attempt("a", 2), 0.0, attempt=2)
        ledger.on_event(Event.COMPLETE, completed("a"), 0.0)
        ledger.on_event(Event.DISPATCH, attempt("b"), 0.0, attempt=1)
        ledger.on_event(Event.FAIL, attempt("b"), 0.0)
        ledger.on_event(Event.SKIP, attempt("c"), 0.0)
        ledger.finish("failed")
    assert [json.loads(line) for line in ledger.path.read_text().splitlines()] == [
        {"service": "a", "end": 2.0, "attempts": 1, "worker": "w"}]
    assert [json.loads(line) for line in ledger.journal.read_text().splitlines()] == [
        {"dispatch": "a", "attempt": 1}, {"ended": "a", "attempt": 1, "as": "retry"},
        {"dispatch": "a", "attempt": 2}, {"dispatch": "b", "attempt": 1},
        {"ended": "b", "attempt": 1, "as": "fail"}, {"end": "failed"}]


def test_a_run_with_an_end_marker_ended_normally(tmp_path):
    ledger = a_run(tmp_path, done=["a"], in_flight=["b"], finish="cancelled")
    assert read_run(tmp_path, None) == ledger_module.RunRecord(ledger.run_id, frozenset({"a"}), None)


def test_a_run_without_an_end_marker_names_what_it_had_in_flight(tmp_path):
    with Ledger(tmp_path) as ledger:
        for name in ("a", "b", "c", "d", "e"):
            ledger.on_event(Event.DISPATCH, attempt(name), 0.0, attempt=1)
        ledger.on_event(Event.COMPLETE, completed("a"), 0.0)
        ledger.on_event(Event.FAIL, attempt("b"), 0.0)
        ledger.on_event(Event.RETRY, attempt("c"), 0.0)
        ledger.on_event(Event.DISPATCH, attempt("c", 2), 0.0, attempt=2)  # its retry: in flight again
        ledger.on_event(Event.CANCEL, attempt("d"), 0.0)
    record = read_run(tmp_path, None)
    assert (record.done, record.in_flight) == ({"a"}, ("c", "e"))


def test_a_run_killed_before_it_dispatched_anything_had_nothing_in_flight(tmp_path):
    with Ledger(tmp_path, resumed=["a"]):
        pass
    assert read_run(tmp_path, None).in_flight == ()


def test_a_line_cut_short_in_the_journal_is_skipped_an_end_marker_cut_short_is_no_end(tmp_path):
    ledger = a_run(tmp_path, done=["a"], in_flight=["b"])
    with open(ledger.journal, "a") as f:
        f.write('{"dispatch": "c", "att')
    assert read_run(tmp_path, None).in_flight == ("b",)
    with open(ledger.journal, "a") as f:
        f.write('\n[1]\nnull\n{"dispatch": 5}\n{"end": "compl')
    assert read_run(tmp_path, None).in_flight == ("b",)


def test_a_run_from_before_the_journal_existed_says_nothing_of_how_it_ended(tmp_path):
    ledger = a_run(tmp_path, done=["a"], in_flight=["b"])
    ledger.journal.unlink()
    assert read_run(tmp_path, None) == ledger_module.RunRecord(ledger.run_id, frozenset({"a"}), None)


# -- last-run-id as --resume reads it --------------------------------------------------------

@pytest.mark.parametrize("content", [b"\xff\xfe\x00junk", b"\x80" * 32, "0123456789abcdef".encode("utf-16") * 2])
def test_a_last_run_id_that_is_not_utf8_is_one_error_naming_the_file_and_the_fix(tmp_path, content):
    (tmp_path / "last-run-id").write_bytes(content)
    with pytest.raises(CritpathError) as err:
        read_run(tmp_path, None)
    message = str(err.value)
    assert str(tmp_path / "last-run-id") in message and "not UTF-8" in message
    assert "critpath run --resume RUN_ID" in message and str(tmp_path / "runs") in message


def test_a_last_run_id_holding_text_that_is_not_a_run_id_names_the_file(tmp_path):
    (tmp_path / "last-run-id").write_text("kundenübersicht\n")
    with pytest.raises(CritpathError, match=r"'.*last-run-id' holds 'kundenübersicht', not a run id"):
        read_run(tmp_path, None)


def test_a_run_id_with_a_trailing_newline_is_not_one(tmp_path):
    with pytest.raises(CritpathError, match="not a run id"):
        read_run(tmp_path, "0" * 32 + "\n")


# -- the state lock ------------------------------------------------------------------------

def test_the_lock_holds_its_pid_and_a_second_holder_is_refused_without_waiting(tmp_path):
    with StateLock(tmp_path / "state") as held:
        assert held.path.read_text() == f"{os.getpid()}\n"
        with pytest.raises(LockHeld) as err:
            StateLock(tmp_path / "state").acquire(wait=False)
        assert str(err.value).startswith(f"another refresh holds {str(held.path)!r} (pid {os.getpid()})")
        assert "--no-wait" in str(err.value)
    assert held.path.read_text() == ""  # released: no stale pid
    with StateLock(tmp_path / "state"):
        pass


def test_a_waiter_is_told_once_who_holds_the_lock_and_gets_it_when_released(tmp_path):
    holder = StateLock(tmp_path).acquire()
    told: list = []
    waiting = threading.Event()
    got = threading.Event()
    waiter = StateLock(tmp_path)

    def wait_for_it():
        waiter.acquire(on_wait=lambda path, pid: (told.append((path, pid)), waiting.set()))
        got.set()

    t = threading.Thread(target=wait_for_it, daemon=True)
    t.start()
    assert waiting.wait(30)
    assert not got.is_set()
    holder.release()
    assert got.wait(30)
    t.join(30)
    assert told == [(tmp_path / "lock", os.getpid())]
    waiter.release()


def test_a_state_dir_that_cannot_be_a_folder_is_bad_input_for_the_lock_too(tmp_path):
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(CritpathError, match=r"^state_dir '.*taken': cannot create or write that folder"):
        StateLock(tmp_path / "taken").acquire()
