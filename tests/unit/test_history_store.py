"""The duration history store (``orchestrator.inputs.history``) on real SQLite files:
a crash mid-write, two writers at once, a corrupt or foreign file, retention."""
from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from orchestrator.inputs.history import AttemptRow, History
from orchestrator.planning.errors import CritpathError


def row(service="a", run_id="r1", attempt=1, outcome="completed", start=100.0, end=102.0, **kw) -> AttemptRow:
    return AttemptRow(service=service, run_id=run_id, runner="threads", attempt=attempt, outcome=outcome,
                      start=start, end=end, **kw)


def test_rows_round_trip_and_observed_keeps_only_successes(tmp_path):
    with History(tmp_path) as h:
        h.record(row(cpu_s=1.5, dispatched=99.9, finished=102.2, pools={"w": 2}))
        h.record(row(service="b", outcome="failed"))
        h.record(row(service="b", attempt=2, start=200.0, end=203.0))
    with History(tmp_path) as h:
        rows = h.rows()
        assert [(r["service"], r["attempt"], r["outcome"]) for r in rows] == [
            ("a", 1, "completed"), ("b", 1, "failed"), ("b", 2, "completed")]
        obs = h.observed()
        assert [o.duration_s for o in obs["b"]] == [3.0]
        (a,) = obs["a"]
        assert (a.duration_s, a.cpu_s, a.overhead_s) == (2.0, 1.5, pytest.approx(0.3))


WRITER = textwrap.dedent("""
    import sys
    from orchestrator.inputs.history import AttemptRow, History
    folder, who, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with History(folder) as h:
        for i in range(n):
            h.record(AttemptRow(service=f"{who}{i % 7}", run_id=f"{who}-{i}", runner="processes", attempt=1,
                                outcome="completed", start=float(i), end=float(i) + 1))
            if i == 50:
                print("written", flush=True)
""")


def test_two_writers_at_once_lose_nothing(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), who, "300"], stdout=subprocess.DEVNULL)
             for who in ("x", "y")]
    assert [p.wait(120) for p in procs] == [0, 0]
    with History(tmp_path) as h:
        rows = h.rows()
    assert sum(r["service"].startswith("x") for r in rows) == 300
    assert sum(r["service"].startswith("y") for r in rows) == 300
    with sqlite3.connect(tmp_path / "history.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_writer_killed_mid_write_leaves_a_readable_file_with_every_committed_row(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), "k", "1000000"], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"written"  # 51 rows committed
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)
    with History(tmp_path) as h:
        rows = h.rows()
    assert len(rows) >= 51
    assert [r["run_id"] for r in rows] == [f"k-{i}" for i in range(len(rows))]  # no gap, no torn row
    with sqlite3.connect(tmp_path / "history.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_corrupt_file_is_one_clear_error_and_is_left_alone(tmp_path):
    junk = b"this is not a database" * 100
    (tmp_path / "history.sqlite").write_bytes(junk)
    with pytest.raises(CritpathError) as err:
        History(tmp_path).open()
    message = str(err.value)
    assert "history.sqlite" in message and "not critpath's history" in message and "move it aside" in message
    assert "\n" not in message
    assert (tmp_path / "history.sqlite").read_bytes() == junk


def test_another_programs_database_is_refused(tmp_path):
    with sqlite3.connect(tmp_path / "history.sqlite") as db:
        db.execute("CREATE TABLE customers (id INTEGER)")
    with pytest.raises(CritpathError, match=r"holds other tables: customers\); move it aside"):
        History(tmp_path).open()


def test_only_the_last_runs_of_each_service_are_kept(tmp_path):
    with History(tmp_path, keep_runs=3) as h:
        for k in range(6):
            h.record(row(run_id=f"run{k}", start=float(k), end=float(k) + 1))
            h.record(row(service="b", run_id=f"run{k}"))
        h.prune(["a"])
        kept = [(r["service"], r["run_id"]) for r in h.rows()]
    assert [run for s, run in kept if s == "a"] == ["run3", "run4", "run5"]
    assert len([s for s, _ in kept if s == "b"]) == 6  # not pruned: not asked


def test_a_file_locked_while_another_run_sets_it_up_is_opened_once_free_never_called_foreign(tmp_path, monkeypatch):
    """SQLite answers some races between two runs setting a new file up with "database is
    locked" at once, past its busy timeout (seen in CI: the second of two runs was told the
    file was not critpath's). Such an open starts again; a lock that never ends is said as one."""
    import orchestrator.inputs.history as history

    real, calls = History._open, []

    def locked_twice(self):
        calls.append(1)
        if len(calls) <= 2:
            raise sqlite3.OperationalError("database is locked")
        return real(self)

    monkeypatch.setattr(History, "_open", locked_twice)
    with History(tmp_path) as h:
        assert h.rows() == [] and len(calls) == 3

    monkeypatch.setattr(history, "LOCKED_WAIT_S", 0.2)
    monkeypatch.setattr(History, "_open", lambda self: (_ for _ in ()).throw(sqlite3.OperationalError("database is locked")))
    with pytest.raises(CritpathError) as err:
        History(tmp_path / "other").open()
    assert "stayed locked" in str(err.value) and "not critpath's" not in str(err.value)
    assert str(tmp_path / "other") in str(err.value)
