"""The run ledger (``orchestrator.execution.ledger``): one JSON line per completed service,
written as the dispatcher reports it, and read back by ``--resume``.

Events are fed to ``Ledger.on_event`` by hand, as the dispatcher would; the file is read back
both raw (one line per completion) and through ``completed_in``.
"""
from __future__ import annotations

import json
import re

import pytest

from orchestrator.execution.events import Event, ServiceRun
from orchestrator.execution.ledger import Ledger, completed_in
from orchestrator.planning.errors import CritpathError


def completed(name: str, attempts: int = 1) -> ServiceRun:
    return ServiceRun(name, state="completed", attempts=attempts, start=10.0, end=11.5, worker="host:42")


def lines(ledger: Ledger) -> list[dict]:
    return [json.loads(line) for line in ledger.path.read_text().splitlines()]


def test_a_new_ledger_has_a_generated_run_id_and_marks_itself_the_last_run(tmp_path):
    with Ledger(tmp_path / "state") as ledger:
        assert re.fullmatch(r"[0-9a-f]{32}", ledger.run_id)
        assert ledger.path == tmp_path / "state" / "runs" / ledger.run_id / "ledger.jsonl"
        assert ledger.path.is_file() and ledger.path.read_text() == ""
    assert (tmp_path / "state" / "last-run-id").read_text() == ledger.run_id + "\n"
    assert Ledger(tmp_path).run_id != ledger.run_id


def test_one_line_per_complete_event_and_none_for_any_other(tmp_path):
    with Ledger(tmp_path) as ledger:
        for kind in Event:
            if kind is not Event.COMPLETE:
                ledger.on_event(kind, ServiceRun("other", attempts=1), 1.0)
        ledger.on_event(Event.COMPLETE, completed("extract"), 2.0)
        ledger.on_event(Event.COMPLETE, completed("load", attempts=3), 3.0)
        assert lines(ledger) == [
            {"service": "extract", "end": 11.5, "attempts": 1, "worker": "host:42"},
            {"service": "load", "end": 11.5, "attempts": 3, "worker": "host:42"}]


def test_each_line_is_in_the_file_as_soon_as_on_event_returns(tmp_path):
    """No buffer to flush: a reader (or a crash) right after the call sees the line."""
    with Ledger(tmp_path) as ledger:
        ledger.on_event(Event.COMPLETE, completed("a"), 1.0)
        assert completed_in(tmp_path, ledger.run_id) == (ledger.run_id, {"a"})
        ledger.on_event(Event.COMPLETE, completed("b"), 2.0)
        assert completed_in(tmp_path, None) == (ledger.run_id, {"a", "b"})


def test_names_are_written_as_ascii_and_read_back_unchanged(tmp_path):
    with Ledger(tmp_path) as ledger:
        ledger.on_event(Event.COMPLETE, completed("kundenübersicht – Umsätze 📈"), 1.0)
    assert ledger.path.read_bytes().isascii()
    assert completed_in(tmp_path, ledger.run_id)[1] == {"kundenübersicht – Umsätze 📈"}


def test_record_resumed_carries_completions_over(tmp_path):
    with Ledger(tmp_path) as ledger:
        ledger.record_resumed(["b", "a"])
        ledger.on_event(Event.COMPLETE, completed("c"), 1.0)
        assert lines(ledger)[:2] == [{"service": "b", "resumed": True}, {"service": "a", "resumed": True}]
    assert completed_in(tmp_path, ledger.run_id) == (ledger.run_id, {"a", "b", "c"})


def test_completed_in_reads_the_last_run_or_the_one_named(tmp_path):
    with Ledger(tmp_path) as first:
        first.on_event(Event.COMPLETE, completed("a"), 1.0)
    with Ledger(tmp_path) as second:
        second.on_event(Event.COMPLETE, completed("b"), 1.0)
    assert completed_in(tmp_path, None) == (second.run_id, {"b"})
    assert completed_in(tmp_path, first.run_id) == (first.run_id, {"a"})


def test_a_line_cut_short_is_skipped_and_the_rest_still_counts(tmp_path):
    """A crash in the middle of a write leaves a partial last line: that service runs again."""
    with Ledger(tmp_path) as ledger:
        ledger.on_event(Event.COMPLETE, completed("a"), 1.0)
        ledger.on_event(Event.COMPLETE, completed("b"), 1.0)
    whole = ledger.path.read_text()
    cut = json.dumps({"service": "c", "end": 1.0})[:-7]
    junk = ["", "not json", "[1, 2]", "null", '"a string"', '{"no_service": 1}']
    ledger.path.write_text(whole + "\n".join(junk) + "\n" + cut)
    assert completed_in(tmp_path, ledger.run_id) == (ledger.run_id, {"a", "b"})


def test_bytes_that_are_not_utf8_do_not_stop_the_read(tmp_path):
    with Ledger(tmp_path) as ledger:
        ledger.on_event(Event.COMPLETE, completed("a"), 1.0)
    with open(ledger.path, "ab") as f:
        f.write(b'\xff\xfe{"service": "b"\n')
    assert completed_in(tmp_path, ledger.run_id)[1] == {"a"}


@pytest.mark.parametrize("run_id", ["zzz", "../../etc/passwd", "0" * 31, "0" * 33, "A" * 32, "", "0" * 31 + "/",
                                    "../" + "0" * 29])
def test_a_run_id_that_is_not_one_is_refused_before_any_path_is_built(tmp_path, run_id):
    with pytest.raises(CritpathError) as err:
        completed_in(tmp_path, run_id)
    assert str(err.value) == (f"--resume {run_id!r}: not a run id (32 hex characters, as printed by "
                              "'critpath run')")


def test_a_run_id_without_a_ledger_is_refused(tmp_path):
    with pytest.raises(CritpathError, match=r"--resume '0{32}': no ledger at .*ledger\.jsonl"):
        completed_in(tmp_path, "0" * 32)


def test_no_earlier_run_is_refused(tmp_path):
    with pytest.raises(CritpathError, match="--resume: no earlier run in .*; run 'critpath run' first"):
        completed_in(tmp_path, None)


def test_a_last_run_id_file_holding_junk_is_refused(tmp_path):
    (tmp_path / "last-run-id").write_text("../../etc\n")
    with pytest.raises(CritpathError, match="not a run id"):
        completed_in(tmp_path, None)


def test_a_state_dir_that_cannot_be_a_folder_is_bad_input(tmp_path):
    (tmp_path / "taken").write_text("a file where the folder should be")
    with pytest.raises(CritpathError, match=r"^state_dir '.*taken': cannot create or write that folder"):
        with Ledger(tmp_path / "taken"):
            pass
