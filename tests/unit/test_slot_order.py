"""A slot's actor runs a job sent behind another (the dispatcher's lookahead) only after that one,
whatever order the calls come in: the Ray slot runs calls on several threads, which Ray does not
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


def test_ray_slot_runs_a_line_of_jobs_in_order_whatever_order_they_come_in():
    slot = _Slot()
    last, c = _in_thread(slot.run, _job("c", 0.0), tag="c", after="b")
    middle, b = _in_thread(slot.run, _job("b", 0.0), tag="b", after="a")
    middle.join(0.3)
    assert middle.is_alive() and last.is_alive(), "a job of the line ran before the one it names came"
    first, a = _in_thread(slot.run, _job("a", 0.1), tag="a")
    for t in (first, middle, last):
        t.join(JOIN_S)
    assert a["value"].ok and b["value"].ok and c["value"].ok
    assert a["value"].end <= b["value"].start and b["value"].end <= c["value"].start


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


def test_dask_slot_line_taken_back_from_its_end_before_its_middle_came_leaves_nothing_waiting(tmp_path):
    """The dispatcher takes a line back from its end (``Lookahead._take_back``): 'c' waits for 'b',
    both are recalled before 'b' comes, and 'b' is turned away when it does; 'c' must not wait on."""
    async def main():
        slot = DaskSlot(root=str(tmp_path))
        a = asyncio.create_task(slot.run(_payload(_job("a", 0.2)), None, key="a"))
        c = asyncio.create_task(slot.run(_payload(_job("c", 0.0)), None, key="c", after="b"))
        await asyncio.sleep(0)
        assert await slot.recall("c") is True and await slot.recall("b") is True
        b = await slot.run(_payload(_job("b", 0.0)), None, key="b", after="a")
        return await a, b, await asyncio.wait_for(c, JOIN_S)

    a, b, c = asyncio.run(main())
    assert a.ok and b is None and c is None


def test_dask_slot_runs_a_line_of_jobs_in_order(tmp_path):
    async def main():
        slot = DaskSlot(root=str(tmp_path))
        c = asyncio.create_task(slot.run(_payload(_job("c", 0.0)), None, key="c", after="b"))
        b = asyncio.create_task(slot.run(_payload(_job("b", 0.0)), None, key="b", after="a"))
        a = await slot.run(_payload(_job("a", 0.1)), None, key="a")
        return a, await b, await c

    a, b, c = asyncio.run(main())
    assert a.ok and b.ok and c.ok
    assert a.end <= b.start and b.end <= c.start


# -- the books both runners keep per slot (runners.slotbook) -------------------------------------

class _Book:
    def __init__(self):
        self.gone, self.calls = False, []


class _Sent:
    def __init__(self, slot):
        self.slot, self.finished = slot, False
        if slot is not None:
            slot.calls.append(self)


def test_a_job_is_sent_behind_only_the_last_in_line_on_a_live_slot_while_the_line_has_room():
    from runners.slotbook import MAX_QUEUED, free_behind

    slot = _Book()
    running = _Sent(slot)
    assert free_behind(running)
    queued = _Sent(slot)
    assert not free_behind(running) and free_behind(queued)  # behind the last in line only
    line = [queued] + [_Sent(slot) for _ in range(MAX_QUEUED - 1)]
    assert len(slot.calls) == 1 + MAX_QUEUED and not any(free_behind(c) for c in slot.calls)  # full
    for c in line:
        slot.calls.remove(c)
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
