"""The Ray runner's slots: one long-lived actor per slot, receiving jobs by method call.

    2 slots:  a0 a1 a2 ... a9   (each on one of the two slot processes)
              hang              (cancelled: its slot's process is killed and replaced)
              b0 b1             (on the two slots that remain: one old, one fresh)
              c0 c1 c2          (one more than the slots: the third runs as a plain task)

The runner alone, against a real local Ray (no Prefect, no dispatcher): what the
dispatcher relies on, and nothing about durations.
"""
from __future__ import annotations

import queue

import pytest

from runners.base import Job, Outcome, WorkerLost
from tests.helpers.graphs import worker_pid

pytestmark = pytest.mark.ray

WAIT_S = 120  # bounded waits: a broken promise fails the test instead of hanging it


def job(key: str, duration: float = 0.0) -> Job:
    return Job(f"{key}#1", key, duration=duration)


def outcomes(inbox: queue.SimpleQueue, n: int) -> list:
    return [inbox.get(timeout=WAIT_S) for _ in range(n)]


def test_slots_are_long_lived_processes_replaced_when_cancelled_or_lost():
    from runners.ray import RayRunner

    inbox: queue.SimpleQueue = queue.SimpleQueue()
    with RayRunner(workers=2) as runner:
        pids = set()
        for k in range(10):  # at most one job per slot at a time, as the dispatcher submits
            runner.submit(job(f"a{k}"), 1.0, inbox.put)
            out = inbox.get(timeout=WAIT_S)
            assert isinstance(out, Outcome) and out.ok, out
            pids.add(worker_pid(out.worker))
        assert len(pids) <= 2, pids  # the same slot processes served every job

        hang = runner.submit(job("hang", 600), 1.0, inbox.put)
        runner.cancel(hang)  # kills the slot's actor: the only way to stop a stuck body
        (late,) = outcomes(inbox, 1)
        assert isinstance(late, WorkerLost), late  # the dispatcher ignores it: the attempt was cancelled

        for k in range(2):
            runner.submit(job(f"b{k}"), 1.0, inbox.put)
        after = outcomes(inbox, 2)
        assert all(isinstance(o, Outcome) and o.ok for o in after), after
        assert len({worker_pid(o.worker) for o in after}) == 2  # a fresh slot replaced the killed one

        # each lasts 2 s, so that none has ended, freeing its slot, before the third is submitted
        handles = [runner.submit(job(f"c{k}", 2.0), 1.0, inbox.put) for k in range(3)]
        assert [h.slot is None for h in handles] == [False, False, True]  # no slot free: a plain task
        assert all(isinstance(o, Outcome) and o.ok for o in outcomes(inbox, 3))


def test_a_slot_whose_process_dies_reports_a_lost_worker_and_is_refilled():
    from runners.ray import RayRunner

    inbox: queue.SimpleQueue = queue.SimpleQueue()
    with RayRunner(workers=2) as runner:
        runner.submit(Job("die#1", "die", call="os:_exit", params={"status": 1}), 1.0, inbox.put)
        (lost,) = outcomes(inbox, 1)
        assert isinstance(lost, WorkerLost), lost
        assert "die" in str(lost)
        handles = [runner.submit(job(f"d{k}"), 1.0, inbox.put) for k in range(2)]
        assert all(h.slot is not None for h in handles)  # the lost slot was refilled, not overflowed
        assert all(isinstance(o, Outcome) and o.ok for o in outcomes(inbox, 2))


def test_a_job_queued_behind_a_busy_slot_starts_there_when_it_ends_and_can_be_taken_back(tmp_path):
    """The dispatcher's lookahead on a real Ray: ``submit_behind`` queues a job on the slot
    running another, and more in line behind that one, never behind one that is not last;
    ``recall`` takes them back, from the end, before they start."""
    from runners.ray import RayRunner
    from tests.helpers.processes import wait_until

    inbox: queue.SimpleQueue = queue.SimpleQueue()
    release = tmp_path / "release"
    with RayRunner(workers=1) as runner:  # one slot
        hang = Job("first#1", "first", call="tests.helpers.faults:hang",
                   params={"pidfile": str(tmp_path / "f.pid"), "release": str(release)})
        first = runner.submit(hang, 1.0, inbox.put)
        wait_until((tmp_path / "f.pid").exists, WAIT_S, "the first body to start")
        taken = runner.submit_behind(job("taken"), 1.0, inbox.put, first)
        assert taken is not None
        assert runner.submit_behind(job("beside"), 1.0, inbox.put, first) is None  # behind the last only
        taken_too = runner.submit_behind(job("taken_too"), 1.0, inbox.put, taken)
        assert taken_too is not None
        assert runner.recall(taken_too) is True and runner.recall(taken) is True
        queued = runner.submit_behind(job("queued"), 1.0, inbox.put, first)
        assert queued is not None
        more = runner.submit_behind(job("more"), 1.0, inbox.put, queued)
        assert more is not None
        release.touch()
        # the reports may come in any order (each is its own ObjectRef's callback); the
        # dispatcher takes a queued job's report before its predecessor's as "it ran"
        got = {o.key: o for o in outcomes(inbox, 3)}
        assert set(got) == {"first#1", "queued#1", "more#1"}  # the jobs taken back never ran
        a, b, c = got["first#1"], got["queued#1"], got["more#1"]
        assert worker_pid(a.worker) == worker_pid(b.worker) == worker_pid(c.worker)  # the same slot, one after the other
        assert b.start >= a.end and c.start >= b.end
        assert inbox.empty()
        assert runner.recall(queued) is False and runner.recall(more) is False  # they ran
        again = runner.submit(job("again"), 1.0, inbox.put)  # the slot is idle again: a slot, not a task
        assert again.slot is first.slot
        assert outcomes(inbox, 1)[0].ok
