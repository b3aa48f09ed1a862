"""A slot's actor runs a job sent behind another (the dispatcher's lookahead) only after that one,
whatever order the two calls come in: the Ray slot runs calls on two threads, which Ray does not
keep in order, and a Dask client may send two calls to one worker on two connections.

The actors' classes are plain Python, driven here without an engine: the job sent behind comes
first, and must wait (it cannot end before the one it names has come), and a recall takes it back
while it waits.
"""
from __future__ import annotations

import asyncio
import pickle
import threading

from runners.base import Job, job_fields
from runners.bootstrap import DaskSlot
from runners.ray import _Slot

#: bounds a join only; the assertions never depend on how long anything took
JOIN_S = 30.0


def _job(name: str, seconds: float) -> Job:
    return Job(f"{name}#1", name, duration=seconds)


def _in_thread(fn, *args, **kwargs):
    out: dict = {}
    t = threading.Thread(target=lambda: out.setdefault("value", fn(*args, **kwargs)), daemon=True)
    t.start()
    return t, out


def test_ray_slot_runs_a_job_sent_behind_only_after_the_one_it_names():
    slot = _Slot()
    behind, b = _in_thread(slot.run, _job("b", 0.0), tag="b", after="a")
    behind.join(0.3)
    assert behind.is_alive(), "the job sent behind 'a' ran before 'a' came"
    first, a = _in_thread(slot.run, _job("a", 0.1), tag="a")
    first.join(JOIN_S)
    behind.join(JOIN_S)
    assert a["value"].ok and b["value"].ok
    assert b["value"].start >= a["value"].end


def test_ray_slot_recall_takes_back_a_job_waiting_for_the_one_it_names():
    slot = _Slot()
    behind, b = _in_thread(slot.run, _job("b", 0.0), tag="b", after="a")
    assert slot.recall("b") is True
    behind.join(JOIN_S)
    assert not behind.is_alive() and b["value"] is None
    # the one it named still runs when it comes, and then cannot be recalled
    first, a = _in_thread(slot.run, _job("a", 0.0), tag="a")
    first.join(JOIN_S)
    assert a["value"].ok
    assert slot.recall("a") is False


def _payload(job: Job) -> bytes:
    return pickle.dumps(job_fields(job))


def test_dask_slot_runs_a_job_sent_behind_only_after_the_one_it_names(tmp_path):
    async def main():
        slot = DaskSlot(root=str(tmp_path))
        behind = asyncio.create_task(slot.run(_payload(_job("b", 0.0)), None, key="b", after="a"))
        done, _ = await asyncio.wait([behind], timeout=0.3)
        assert not done, "the job sent behind 'a' ran before 'a' came"
        a = await slot.run(_payload(_job("a", 0.1)), None, key="a")
        b = await behind
        return a, b

    a, b = asyncio.run(main())
    assert a.ok and b.ok
    assert b.start >= a.end


def test_dask_slot_recall_takes_back_a_job_waiting_for_the_one_it_names(tmp_path):
    async def main():
        slot = DaskSlot(root=str(tmp_path))
        behind = asyncio.create_task(slot.run(_payload(_job("b", 0.0)), None, key="b", after="a"))
        await asyncio.sleep(0)  # it is waiting for 'a' now
        assert await slot.recall("b") is True
        a = await slot.run(_payload(_job("a", 0.0)), None, key="a")
        return a, await behind, await slot.recall("a")

    a, b, late = asyncio.run(main())
    assert a.ok and b is None and late is False


# -- the books both runners keep per slot (runners.slotbook) -------------------------------------

class _Book:
    def __init__(self):
        self.gone, self.calls = False, []


class _Sent:
    def __init__(self, slot):
        self.slot, self.finished = slot, False
        if slot is not None:
            slot.calls.append(self)


def test_a_job_is_sent_behind_only_a_running_call_alone_on_a_live_slot():
    from runners.slotbook import free_behind

    slot = _Book()
    running = _Sent(slot)
    assert free_behind(running)
    queued = _Sent(slot)
    assert not free_behind(running) and not free_behind(queued)  # one queued job at most
    slot.calls.remove(queued)
    running.finished = True
    assert not free_behind(running)  # it ended: the slot takes a job the usual way
    running.finished, slot.gone = False, True
    assert not free_behind(running)
    assert not free_behind(_Sent(None))  # sent as a plain task: no slot to queue on


def test_a_slot_is_idle_again_only_when_nothing_else_was_sent_there():
    from runners.slotbook import off_slot

    slot, idle = _Book(), []
    running, queued = _Sent(slot), _Sent(slot)
    off_slot(running, idle)
    assert idle == [] and slot.calls == [queued]  # the queued job runs there now
    off_slot(queued, idle)
    off_slot(queued, idle)  # said twice (a recall and a late answer): idle once
    assert idle == [slot] and slot.calls == []
    gone = _Book()
    gone.gone = True
    off_slot(_Sent(gone), idle)
    assert idle == [slot]  # a gone slot is never idle again
