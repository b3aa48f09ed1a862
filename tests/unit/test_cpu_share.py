"""A service's whole CPU in a shared process (issue 11): its thread's CPU plus its even share of
what the process's other threads used while it ran, such as DuckDB's pool threads."""
from __future__ import annotations

import threading
import time

import pytest

from runners.base import Job, execute
from runners.cpu_share import Accountant

pytestmark = pytest.mark.skipif(not hasattr(time, "pthread_getcpuclockid"), reason="no per-thread CPU clocks")

TICK = 0.02  # clock reads a few microseconds apart, and thread clocks tick in scheduler slices


def _burn_on_another_thread(seconds: float) -> float:
    """``seconds`` of CPU on a thread of its own, as a library's worker pool would; its CPU time."""
    used = []

    def burn():
        stop = time.thread_time() + seconds
        while time.thread_time() < stop:
            pass
        used.append(time.thread_time())

    t = threading.Thread(target=burn)
    t.start()
    t.join()
    return used[0]


def test_a_body_alone_is_charged_the_threads_it_made_work():
    acc = Accountant()
    acc.start()
    helper = _burn_on_another_thread(0.2)
    extra = acc.stop()
    assert extra >= helper - TICK
    assert extra < helper + 0.5  # nothing else of note ran here: not the whole process's past CPU


def test_cpu_of_a_pool_thread_is_split_evenly_among_the_bodies_running_then():
    acc = Accountant()
    b_started, helper_done, b_stopped = threading.Event(), threading.Event(), threading.Event()
    got = {}

    def body_b():
        acc.start()
        b_started.set()
        helper_done.wait()
        got["b"] = acc.stop()
        b_stopped.set()

    acc.start()  # body A, on this thread
    t = threading.Thread(target=body_b)
    t.start()
    b_started.wait()
    helper = _burn_on_another_thread(0.3)  # while both run
    helper_done.set()
    b_stopped.wait()
    t.join()
    got["a"] = acc.stop()
    assert got["a"] >= helper / 2 - TICK and got["b"] >= helper / 2 - TICK
    # the bodies' own threads are not counted twice: B's thread mostly waited
    assert got["b"] < helper / 2 + 0.2


def test_cpu_while_no_body_runs_is_nobodys():
    acc = Accountant()
    _burn_on_another_thread(0.2)  # before any body
    acc.start()
    extra = acc.stop()
    assert extra < TICK


def _body():  # a service whose library computes on a thread of its own
    _burn_on_another_thread(0.2)


def test_an_outcome_counts_the_whole_cpu_of_its_body():
    out = execute(Job("k#1", "k", call="tests.unit.test_cpu_share:_body"))
    assert out.ok, out.error
    assert out.whole_cpu_s >= out.thread_cpu_s + 0.2 - TICK


def test_a_body_with_the_process_to_itself_is_not_shared_out_or_sampled():
    # processes and Ray slots run one service per process: its process CPU says it all, and
    # neither the accountant nor the lock probe's sampler (which takes the lock) runs there
    out = execute(Job("k#1", "k", call="tests.unit.test_cpu_share:_body"), shared=False)
    assert out.ok, out.error
    assert out.whole_cpu_s is None and out.native_cpu_s is None
    assert out.process_cpu_s >= out.thread_cpu_s + 0.2 - TICK
