"""The dispatcher's lookahead (issue 15): a slot's next service chosen while the slot is busy.

``SlotRunner`` implements the runner seam with slots, like the Dask and Ray actor runners: a
job runs on a slot, one at a time, and ``submit_behind`` queues more on a busy slot, in line,
each to start the moment the one before it ends. Nothing runs: the test (``complete``) ends each job in
the order it wants, once the dispatcher has settled (it waits on its inbox with nothing queued
there), so every choice the dispatcher makes is the same from run to run. It is a double of
our own seam, not of Prefect or an engine.

Assertions are on the order the jobs started in, which went ahead, the limits at every start,
and the services' states and attempts; never on time.
"""
from __future__ import annotations

import threading
import time

import pytest

from orchestrator.execution.dispatcher import Dispatcher
from orchestrator.execution.events import Event
from orchestrator.planning.graph import Graph
from orchestrator.planning.model import Service
from orchestrator.planning.planner import make_plan
from runners.base import Job, Outcome, WorkerLost
from runners.slotbook import MAX_QUEUED


class SlotRunner:
    name = "slots"

    def __init__(self, slots: int, pool_of: dict[str, str | None] | None = None, lookahead: bool = True):
        self.capacity = slots
        self.slots: list[list[tuple[Job, object]]] = [[] for _ in range(slots)]  # head: running
        self.started: list[str] = []  # job keys, in the order they started on a slot
        self.ahead: list[str] = []  # keys sent by submit_behind
        self.behind: dict[str, str] = {}  # key sent ahead -> the key it was queued behind
        self.recalled: list[str] = []
        self.cancelled: list[str] = []
        self.pool_of = pool_of or {}
        self.running_at_start: list[tuple[str, ...]] = []  # what ran at each start, itself included
        self.lock = threading.Lock()
        if not lookahead:
            self.submit_behind = None  # the dispatcher sees no lookahead

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def _began(self, job: Job) -> None:
        self.started.append(job.key)
        self.running_at_start.append(tuple(s[0][0].name for s in self.slots if s))

    def submit(self, job: Job, priority: float, done):
        with self.lock:
            slot = next(s for s in self.slots if not s)
            slot.append((job, done))
            self._began(job)
        return job.key

    def submit_behind(self, job: Job, priority: float, done, behind):
        with self.lock:  # behind the last in line only, as runners.slotbook.free_behind
            slot = next((s for s in self.slots if s and s[-1][0].key == behind), None)
            if slot is None or len(slot) > MAX_QUEUED:
                return None
            slot.append((job, done))
            self.ahead.append(job.key)
            self.behind[job.key] = behind
        return job.key

    def recall(self, handle) -> bool:
        with self.lock:
            for slot in self.slots:
                if len(slot) > 1 and slot[-1][0].key == handle:
                    slot.pop()
                    self.recalled.append(handle)
                    return True
                # the dispatcher takes a line back from its end: one behind would wait forever
                assert all(job.key != handle for job, _ in slot[1:]), f"{handle} recalled before those behind it"
        return False

    def cancel(self, handle) -> None:
        with self.lock:
            self.cancelled.append(handle)
            for slot in self.slots:
                if slot and slot[0][0].key == handle:  # the slot goes on with what is queued there
                    self._end(slot)

    def _end(self, slot) -> None:
        slot.pop(0)
        if slot:
            self._began(slot[0][0])

    def running(self, name: str) -> bool:
        with self.lock:
            return any(s and s[0][0].name == name for s in self.slots)

    def finish(self, name: str, reply=None) -> None:
        """End ``name``'s running job (ok, or ``reply``: an engine's exception); the job queued on
        its slot starts at once, before the dispatcher hears of the end."""
        with self.lock:
            slot = next(s for s in self.slots if s and s[0][0].name == name)
            job, done = slot[0]
            self._end(slot)
        done(reply if reply is not None else Outcome(job.key, True, 1.0, 2.0, "slots:1"))

    def lose_slot(self, name: str) -> None:
        """The worker of ``name``'s slot dies: the job queued there reports its loss first."""
        with self.lock:
            slot = next(s for s in self.slots if s and s[0][0].name == name)
            jobs = list(reversed(slot))
            slot.clear()
        for job, done in jobs:
            done(WorkerLost(f"worker of {job.key} died"))


def settled(d: Dispatcher, t: threading.Thread | None = None) -> None:
    """Until the dispatcher waits on an empty inbox (it has seen every report and made its
    choices), or its thread ``t`` has ended."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if (d.events and d.events[-1].kind is Event.WAIT and d._inbox.empty()) or (t and not t.is_alive()):
            return
        time.sleep(0.002)
    raise AssertionError("the dispatcher did not settle")


def drive(d: Dispatcher, runner: SlotRunner, order: list[str]) -> threading.Thread:
    """Run ``d`` on a thread; end the services in ``order``, each once it runs and ``d`` settled."""
    t = threading.Thread(target=d.run, daemon=True)
    t.start()
    for name in order:
        settled(d)
        assert runner.running(name), f"{name} is not running; started: {runner.started}"
        runner.finish(name)
    t.join(10)
    assert not t.is_alive()
    return t


def one_slot(g: Graph) -> tuple[SlotRunner, Dispatcher, threading.Thread]:
    """``g`` on one slot, its dispatcher running on a thread, settled after its first choices."""
    runner = SlotRunner(1)
    d = Dispatcher(make_plan(g, 1), runner, max_concurrency=1)
    t = threading.Thread(target=d.run, daemon=True)
    t.start()
    settled(d)
    return runner, d, t


def fan_out(n: int = 6) -> Graph:
    return Graph([Service(f"s{k}", duration=float(n - k)) for k in range(n)])


def with_and_without(g: Graph, slots: int, cls=Dispatcher) -> dict[bool, tuple[SlotRunner, Dispatcher]]:
    """``g`` run to the end with the lookahead and without, each service ended in ``g``'s order
    once it runs; every one completed at its first attempt. By ``lookahead``: the runner and the
    dispatcher."""
    out = {}
    for lookahead in (True, False):
        runner = SlotRunner(slots, lookahead=lookahead)
        d = cls(make_plan(g, slots), runner, max_concurrency=slots)
        drive(d, runner, list(g.names))
        assert all(r.state == "completed" and r.attempts == 1 for r in d.runs.values())
        out[lookahead] = runner, d
    return out


def test_a_busy_slot_gets_its_next_service_ahead_and_the_order_is_the_policys():
    g = Graph([Service(f"s{k}", duration=1.0) for k in range(6)])  # ties: the smaller name first
    (ahead, d), (plain, d_plain) = with_and_without(g, 2).values()
    # s0 and s1 start at once; every later one went ahead, behind the one it followed
    assert ahead.ahead == ["s2#1", "s3#1", "s4#1", "s5#1"] and d.lookahead
    assert plain.ahead == [] and not d_plain.lookahead
    assert ahead.started == plain.started == [f"s{k}#1" for k in range(6)]


def test_the_next_service_waits_on_the_slot_expected_to_free_first_never_behind_a_long_one():
    # "long" and "short" run; "a" and "b" are ready. "a" goes behind "short" (its slot frees
    # first); "b" is not queued behind "long": "short"'s slot, after "a", still frees first
    g = Graph([Service("long", duration=10.0), Service("short", duration=1.5),
               Service("a", duration=1.0), Service("b", duration=0.9)])
    runner = SlotRunner(2)
    d = Dispatcher(make_plan(g, 2), runner, max_concurrency=2)
    drive(d, runner, ["short", "a", "b", "long"])
    assert runner.behind == {"a#1": "short#1", "b#1": "a#1"}
    assert runner.started == ["long#1", "short#1", "a#1", "b#1"]


def test_a_service_queued_behind_one_that_overruns_is_taken_back_for_a_slot_that_frees():
    # by the estimates "long" frees first, so "a" waits behind it; "long" overruns and "short"
    # ends first: its free slot gets "a", taken back, as the policy would have given it
    g = Graph([Service("long", duration=1.0), Service("short", duration=2.0), Service("a", duration=0.5)])
    runner = SlotRunner(2)
    d = Dispatcher(make_plan(g, 2), runner, max_concurrency=2)
    drive(d, runner, ["short", "a", "long"])
    assert runner.behind == {"a#1": "long#1"} and runner.recalled == ["a#1"]
    assert runner.started == ["short#1", "long#1", "a#1"]
    assert d.runs["a"].attempts == 1


def test_nothing_goes_ahead_of_a_more_critical_service_about_to_be_ready():
    # a -> c is the long chain; b is ready, but c (ready when a ends) outranks it, so b must
    # not be queued behind a: at a's end, c takes the slot, as without lookahead
    g = Graph([Service("a", duration=1.0), Service("c", after=("a",), duration=10.0), Service("b", duration=2.0)])
    runner = SlotRunner(1)
    d = Dispatcher(make_plan(g, 1), runner, max_concurrency=1)
    drive(d, runner, ["a", "c", "b"])
    assert runner.started == ["a#1", "c#1", "b#1"]
    assert runner.behind == {"b#1": "c#1"}  # not behind a


def test_the_limits_hold_at_every_start_with_pools():
    g = Graph([Service(f"w{k}", pool="wh", duration=5.0 - k) for k in range(4)]
              + [Service(f"x{k}", duration=1.0) for k in range(4)], pools={"wh": 1})
    runner = SlotRunner(3)
    d = Dispatcher(make_plan(g, 3), runner, max_concurrency=3)
    t = threading.Thread(target=d.run, daemon=True)
    t.start()
    while t.is_alive():
        settled(d, t)
        with runner.lock:
            heads = [s[0][0].name for s in runner.slots if s]
        if heads:
            runner.finish(sorted(heads)[0])
    t.join(10)
    assert all(r.state == "completed" for r in d.runs.values())
    assert runner.ahead, "no service went ahead: the case does not test the lookahead"
    for running in runner.running_at_start:
        assert len(running) <= 3
        assert sum(name.startswith("w") for name in running) <= 1, running


def test_a_timed_out_service_gives_back_the_one_queued_behind_it_unspent():
    g = Graph([Service("hung", duration=9.0, timeout=0.2), Service("next", duration=1.0)])
    runner, d, t = one_slot(g)
    assert runner.ahead == ["next#1"]
    deadline = time.monotonic() + 10
    while "next#1" not in runner.recalled and time.monotonic() < deadline:
        time.sleep(0.01)
    settled(d)  # after the timeout: "next" was taken back, then sent the usual way
    runner.finish("next")
    t.join(10)
    assert runner.recalled == ["next#1"] and runner.cancelled == ["hung#1"]
    assert d.runs["hung"].state == "failed"
    assert d.runs["next"].state == "completed" and d.runs["next"].attempts == 1
    assert runner.started == ["hung#1", "next#1"]


def test_a_cancel_takes_back_what_was_queued_and_does_not_call_it_cancelled():
    g = fan_out(3)
    runner, d, t = one_slot(g)
    assert runner.ahead == ["s1#1"]
    d.cancel("stop")
    t.join(10)
    assert runner.recalled == ["s1#1"] and runner.cancelled == ["s0#1"]
    assert d.runs["s0"].state == "cancelled"
    assert d.runs["s1"].state == "ready" and d.runs["s1"].attempts == 0


def test_a_queued_service_whose_slot_is_lost_is_ready_again_its_attempt_unspent():
    g = fan_out(2)
    runner, d, t = one_slot(g)
    assert runner.ahead == ["s1#1"]
    runner.lose_slot("s0")  # s1's loss is reported first: it never started
    for name in ("s0", "s1"):
        settled(d)
        runner.finish(name)
    t.join(10)
    assert d.runs["s0"].attempts == 2 and d.runs["s0"].lost_worker  # a lost worker earns one more
    assert d.runs["s1"].attempts == 1 and d.runs["s1"].state == "completed"


def test_a_queued_services_report_before_the_one_ahead_of_its_counts_it_as_started():
    """Two reports may come back in either order (a Ray actor's two ObjectRefs, a Dask worker's two
    connections): the queued service's first means the one ahead of it has ended."""
    runner, d, t = one_slot(Graph([Service("a", duration=2.0), Service("b", duration=1.0)]))
    assert (runner.started, runner.ahead) == (["a#1"], ["b#1"])
    with runner.lock:  # a ends on its slot and b starts there, but a's report is held back
        slot = runner.slots[0]
        job_a, done_a = slot[0]
        runner._end(slot)
    runner.finish("b")
    settled(d)
    done_a(Outcome(job_a.key, True, 1.0, 2.0, "slots:1"))
    t.join(10)
    assert not t.is_alive()
    assert {n: (r.state, r.attempts) for n, r in d.runs.items()} == {"a": ("completed", 1), "b": ("completed", 1)}
    assert runner.started == ["a#1", "b#1"] and runner.recalled == []


# -- lines: services shorter than a round trip ---------------------------------------------------

class FixedHop(Dispatcher):
    """The round trip held at ``_hop`` (the real one measures it: ``_turnaround``, tested below)."""

    _hop = 0.05

    def _turnaround(self, flight, seconds, ran_s):
        pass


def test_services_shorter_than_a_round_trip_go_ahead_in_a_line_in_the_policys_order():
    g = Graph([Service(f"s{k}", duration=0.01) for k in range(8)])
    (ahead, _), (plain, _) = with_and_without(g, 1, FixedHop).values()
    # behind s0, a line of five, each behind the one before: 0.04 s queued < 0.05 s, one more
    assert [ahead.behind[f"s{k}#1"] for k in range(1, 6)] == ["s0#1", "s1#1", "s2#1", "s3#1", "s4#1"]
    assert ahead.ahead[:5] == [f"s{k}#1" for k in range(1, 6)]
    assert len(ahead.ahead) == 7
    assert ahead.started == plain.started == [f"s{k}#1" for k in range(8)]


def test_a_line_of_services_with_no_time_at_all_stops_at_its_longest():
    from orchestrator.execution.lookahead import MAX_AHEAD

    n = MAX_AHEAD + 4
    g = Graph([Service(f"s{k:02d}", duration=0.0) for k in range(n)])
    runner = SlotRunner(1)
    d = FixedHop(make_plan(g, 1), runner, max_concurrency=1)
    t = threading.Thread(target=d.run, daemon=True)
    t.start()
    settled(d)
    assert runner.ahead == [f"s{k:02d}#1" for k in range(1, MAX_AHEAD + 1)]
    for k in range(n):
        settled(d)
        runner.finish(f"s{k:02d}")
    t.join(10)
    assert all(r.state == "completed" and r.attempts == 1 for r in d.runs.values())
    assert runner.started == [f"s{k:02d}#1" for k in range(n)]


def test_a_line_stops_growing_once_it_holds_a_round_trip_of_work():
    g = Graph([Service(f"s{k}", duration=0.03) for k in range(6)])
    runner, d = SlotRunner(1), None
    d = FixedHop(make_plan(g, 1), runner, max_concurrency=1)
    t = threading.Thread(target=d.run, daemon=True)
    t.start()
    settled(d)
    assert runner.ahead == ["s1#1", "s2#1"]  # 0.03 s queued < 0.05 s: one more; 0.06 s: enough
    for k in range(6):
        settled(d)
        runner.finish(f"s{k}")
    t.join(10)
    assert all(r.state == "completed" and r.attempts == 1 for r in d.runs.values())


def test_a_timed_out_service_gives_back_its_whole_line_from_the_end_unspent():
    g = Graph([Service("hung", duration=9.0, timeout=0.2)] + [Service(f"n{k}", duration=0.01) for k in range(3)])
    runner = SlotRunner(1)
    d = FixedHop(make_plan(g, 1), runner, max_concurrency=1)
    t = threading.Thread(target=d.run, daemon=True)
    t.start()
    settled(d)
    assert runner.ahead == ["n0#1", "n1#1", "n2#1"]
    deadline = time.monotonic() + 10
    while len(runner.recalled) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert runner.recalled == ["n2#1", "n1#1", "n0#1"]  # the end first: each waits for the one before
    for k in range(3):
        settled(d)
        runner.finish(f"n{k}")
    t.join(10)
    assert d.runs["hung"].state == "failed"
    assert all(d.runs[f"n{k}"].state == "completed" and d.runs[f"n{k}"].attempts == 1 for k in range(3))


def test_the_last_of_a_lines_reports_first_counts_every_one_before_it_as_started():
    g = Graph([Service("a", duration=1.0), Service("b", duration=0.01), Service("c", duration=0.01)])
    runner = SlotRunner(1)
    d = FixedHop(make_plan(g, 1), runner, max_concurrency=1)
    t = threading.Thread(target=d.run, daemon=True)
    t.start()
    settled(d)
    assert runner.started == ["a#1"] and runner.ahead == ["b#1", "c#1"]
    held = []
    with runner.lock:  # a and b end on the slot, c starts there; a's and b's reports are held back
        slot = runner.slots[0]
        for _ in range(2):
            held.append(slot[0])
            runner._end(slot)
    runner.finish("c")
    settled(d)
    assert d.runs["c"].state == "completed"
    for job, done in held:
        done(Outcome(job.key, True, 1.0, 2.0, "slots:1"))
    t.join(10)
    assert not t.is_alive()
    assert {n: (r.state, r.attempts) for n, r in d.runs.items()} == {
        "a": ("completed", 1), "b": ("completed", 1), "c": ("completed", 1)}
    assert runner.started == ["a#1", "b#1", "c#1"] and runner.recalled == []


def test_the_round_trip_is_learnt_from_services_sent_the_usual_way_only():
    from orchestrator.execution.flights import InFlight
    from orchestrator.execution.lookahead import HOP_S, HOP_WEIGHT

    d = Dispatcher(make_plan(fan_out(2), 1), SlotRunner(1), max_concurrency=1)
    d._turnaround(InFlight(1, None), 0.30, 0.10)  # 0.2 s of it was the round trip
    assert d._hop == pytest.approx(HOP_S + HOP_WEIGHT * (0.2 - HOP_S))
    before = d._hop
    d._turnaround(InFlight(1, None, ahead=True), 5.0, 0.1)  # dispatched when the one before it ended
    d._turnaround(InFlight(1, None), 0.1, 0.3)  # clocks apart: never below nothing
    assert d._hop == pytest.approx(before + HOP_WEIGHT * (0.0 - before))


def chain_beside_shorts(b_seconds: float, order: list[str]) -> SlotRunner:
    """a -> c (the long chain) beside four ready b's of ``b_seconds`` each, on one slot with a
    round trip of 50 ms (``FixedHop``), run to the end in ``order``: the runner."""
    g = Graph([Service("a", duration=0.01), Service("c", after=("a",), duration=10.0)]
              + [Service(f"b{k}", duration=b_seconds) for k in range(4)])
    runner = SlotRunner(1)
    d = FixedHop(make_plan(g, 1), runner, max_concurrency=1)
    drive(d, runner, order)
    return runner


def test_work_within_a_round_trip_goes_ahead_of_a_more_critical_service_about_to_be_ready():
    # a -> c is the long chain; the b's are ready and outranked by c (ready when a ends). Their
    # 4 ms queued behind a end long before c, sent when a's end is heard, could reach the slot
    # (a round trip, 50 ms): they go, and c is queued behind the last of them
    runner = chain_beside_shorts(0.001, ["a", "b0", "b1", "b2", "b3", "c"])
    assert runner.started == ["a#1", "b0#1", "b1#1", "b2#1", "b3#1", "c#1"]
    assert runner.behind == {"b0#1": "a#1", "b1#1": "b0#1", "b2#1": "b1#1", "b3#1": "b2#1", "c#1": "b3#1"}


def test_no_more_than_a_round_trip_of_work_goes_ahead_of_a_more_critical_service_about_to_be_ready():
    # as above with b's of 20 ms: two fit in the round trip (50 ms), a third would keep c waiting,
    # so c takes the slot after the two, and the other b's follow it
    runner = chain_beside_shorts(0.02, ["a", "b0", "b1", "c", "b2", "b3"])
    assert runner.started == ["a#1", "b0#1", "b1#1", "c#1", "b2#1", "b3#1"]
    assert runner.behind["b0#1"] == "a#1" and runner.behind["b1#1"] == "b0#1"
    assert runner.behind["c#1"] == "b1#1" and runner.behind["b2#1"] == "c#1"  # a line behind c
