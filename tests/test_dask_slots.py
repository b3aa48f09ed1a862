"""The Dask runner's slots: one long-lived actor per worker thread, receiving jobs by method call.

    worker processes of two threads each, so two slots each:
        a0 a1 ...        (each on a slot thread; never more threads than slots)
        hang, beside..   (hang cancelled: its worker restarts, and the beside job sharing it
                          dies as the runner's own doing; the others end as they would)
        b0 b1 ...        (the slots are all back, fresh ones on the restarted worker)
        c0 c1 ... cN     (one more than the slots: the last runs as a task)

The runner alone, against a real local Dask cluster (no Prefect, no dispatcher): what the
dispatcher relies on, and nothing about durations.
"""
from __future__ import annotations

import queue

import pytest

from runners.base import Job, Outcome, RestartedWorkerLost
from tests.helpers.graphs import worker_pid
from tests.helpers.processes import wait_until

pytestmark = pytest.mark.dask

HANG = "tests.helpers.faults:hang"
WAIT_S = 120  # bounded waits: a broken promise fails the test instead of hanging it


def job(key: str, duration: float = 0.0, **kw) -> Job:
    return Job(f"{key}#1", key, duration=duration, **kw)


def outcomes(inbox: queue.SimpleQueue, n: int) -> list:
    return [inbox.get(timeout=WAIT_S) for _ in range(n)]


def _slot_thread(out: Outcome) -> str:
    return out.worker.rpartition("/")[2]


def test_slots_are_long_lived_threads_replaced_when_their_worker_restarts(tmp_path):
    import os

    from runners.dask import DaskRunner
    from runners.dask_slots import Call

    inbox: queue.SimpleQueue = queue.SimpleQueue()
    with DaskRunner(workers=2 * (os.cpu_count() or 1)) as runner:  # two slot threads per worker process
        slots = runner.capacity
        threads = set()
        for k in range(3 * slots):  # at most one job per slot at a time, as the dispatcher submits
            runner.submit(job(f"a{k}"), 1.0, inbox.put)
            out = inbox.get(timeout=WAIT_S)
            assert isinstance(out, Outcome) and out.ok, out
            threads.add((worker_pid(out.worker), _slot_thread(out)))
        assert len(threads) <= slots and all(t.startswith("critpath-slot") for _, t in threads), threads

        hang = runner.submit(job("hang", call=HANG, params={"pidfile": str(tmp_path / "hang.pid")}), 1.0,
                             lambda out: inbox.put(("hang", out)))
        assert isinstance(hang, Call)
        release = tmp_path / "release"
        besides = []  # until one shares hang's worker process
        for k in range(slots - 1):
            params = {"pidfile": str(tmp_path / f"b{k}.pid"), "release": str(release)}
            call = runner.submit(job(f"beside{k}", call=HANG, params=params), 1.0,
                                 lambda out, k=k: inbox.put((f"beside{k}", out)))
            besides.append(call)
            if call.slot.worker == hang.slot.worker:
                break
        sharing = f"beside{len(besides) - 1}"
        wait_until((tmp_path / "hang.pid").exists, WAIT_S, "the hung body to start")
        runner.cancel(hang)  # restarts its worker: the only way to stop a stuck body
        release.touch()  # the others, on other workers, end as they would
        got = dict(outcomes(inbox, len(besides) + 1))
        assert isinstance(got.pop(sharing), RestartedWorkerLost)  # sent again, no attempt lost
        assert not isinstance(got.pop("hang"), Outcome)  # the dispatcher ignores it: the attempt was cancelled
        assert all(isinstance(o, Outcome) and o.ok for o in got.values()), got

        wait_until(lambda: len(runner._slots._slots) == slots, WAIT_S, "fresh slots on the restarted worker")
        for k in range(slots):
            runner.submit(job(f"b{k}"), 1.0, inbox.put)
        after = outcomes(inbox, slots)
        assert all(isinstance(o, Outcome) and o.ok and _slot_thread(o).startswith("critpath-slot")
                   for o in after), after

        # each lasts 2 s, so that none has ended, freeing its slot, before the last is submitted
        handles = [runner.submit(job(f"c{k}", 2.0), 1.0, inbox.put) for k in range(slots + 1)]
        assert [isinstance(h, Call) for h in handles] == [True] * slots + [False]  # no slot free: a task
        assert all(isinstance(o, Outcome) and o.ok for o in outcomes(inbox, slots + 1))


def test_a_job_that_cannot_be_sent_fails_at_submit_and_keeps_its_slot():
    import threading

    from runners.dask import DaskRunner

    inbox: queue.SimpleQueue = queue.SimpleQueue()
    with DaskRunner(workers=1) as runner:
        with pytest.raises(TypeError, match="pickle"):  # the dispatcher fails that service alone, no retry
            runner.submit(job("unpicklable", params={"lock": threading.Lock()}), 1.0, inbox.put)
        runner.submit(job("next"), 1.0, inbox.put)
        out = inbox.get(timeout=WAIT_S)
        assert isinstance(out, Outcome) and out.ok and _slot_thread(out).startswith("critpath-slot"), out


def test_a_job_queued_behind_a_busy_slot_starts_there_when_it_ends_and_can_be_taken_back(tmp_path):
    """The dispatcher's lookahead on a real cluster: ``submit_behind`` queues a job on the slot
    running another, and more in line behind that one, never behind one that is not last;
    ``recall`` takes them back, from the end, before they start."""
    from runners.dask import DaskRunner

    inbox: queue.SimpleQueue = queue.SimpleQueue()
    with DaskRunner(workers=1) as runner:  # one slot
        release = tmp_path / "release"
        first = runner.submit(job("first", call=HANG, params={"pidfile": str(tmp_path / "f.pid"),
                                                               "release": str(release)}), 1.0, inbox.put)
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
        # the answers may come in any order (calls, connections); the dispatcher takes a queued
        # job's report before its predecessor's as "it ran"
        got = {o.key: o for o in outcomes(inbox, 3)}
        assert set(got) == {"first#1", "queued#1", "more#1"}  # the jobs taken back never ran
        a, b, c = got["first#1"], got["queued#1"], got["more#1"]
        assert a.worker == b.worker == c.worker  # the same slot, one after the other
        assert b.start >= a.end and c.start >= b.end
        assert inbox.empty()
        assert runner.recall(queued) is False and runner.recall(more) is False  # they ran
        again = runner.submit(job("again"), 1.0, inbox.put)  # the slot is idle again: a slot, not a task
        assert again.slot is first.slot
        assert outcomes(inbox, 1)[0].ok
