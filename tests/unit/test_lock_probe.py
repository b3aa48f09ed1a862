"""The lock probe (``runners.lock_probe``): a thread's CPU that ran without the interpreter lock.
Python code holds the lock whenever it runs; the sampler's arithmetic is checked on a body whose
clock is set by the test."""
from __future__ import annotations

import threading
import time

import pytest

from runners.lock_probe import LockProbe


def _python(seconds: float) -> None:
    stop = time.thread_time() + seconds
    while time.thread_time() < stop:
        pass


def test_python_code_reads_as_holding_the_lock():
    """A body running Python code holds the lock whenever it runs, so while the sampler (here
    this thread, already on a core) holds it, the body's clock does not move: it reads as almost
    no native time. (Load on the machine can only lower the share read.)"""
    probe = LockProbe()
    probe._sampler = threading.current_thread()  # no sampler thread of its own: this test samples
    result = {}

    def run():
        probe.start()
        t0 = time.thread_time()
        _python(0.5)
        result["used"] = time.thread_time() - t0
        result["native"] = probe.stop()

    worker = threading.Thread(target=run)
    worker.start()
    while worker.is_alive():
        time.sleep(0.003)  # lets the body take the lock between samples
        probe.sample()
    worker.join()
    assert result["native"] / result["used"] < 0.2


@pytest.mark.parametrize("rate", [0.0, 0.5, 1.0])
def test_a_sample_credits_the_share_of_the_spin_the_body_s_clock_moved(rate):
    """The arithmetic, on a body whose clock moves at ``rate`` of the wall clock while the sampler
    holds the lock (1.0: native code on a core of its own; 0.0: waiting for the lock). Both clocks
    are the test's, stepped 1 us at every read, so no load on the machine can move the result.
    How much native code really runs on a core during a spin depends on that load, so real native
    code is not asserted here: a DuckDB query read 87% native on a quiet machine, and under full
    load native time is under-read (README, "Predicting the run")."""
    from runners.lock_probe import _Body

    now = [100.0]

    def wall():
        now[0] += 1e-6
        return now[0]

    class Clocked(_Body):
        def read(self):
            return rate * wall()

    probe = LockProbe(spin_s=0.002, clock=wall)
    me = threading.get_ident()
    start = wall()
    probe._bodies[me] = body = Clocked(clock=0, last=start)
    for _ in range(20):
        now[0] += 0.002  # the sampler's sleep between samples
        probe.sample()
    assert body.native_s == pytest.approx(rate * (body.last - start), rel=0.01, abs=1e-9)
    assert probe.stop() == body.native_s


def test_a_body_not_started_owes_nothing_and_the_share_goes_to_the_history_s_lock_time():
    from orchestrator.execution.recording import gil_seconds, native_seconds
    from runners.base import Outcome

    assert LockProbe().stop() == 0.0
    out = Outcome("k#1", True, 0.0, 1.0, "w", thread_cpu_s=1.0, native_cpu_s=0.8)
    assert gil_seconds("threads", out) == pytest.approx(0.2) and native_seconds("dask", out) == 0.8
    assert gil_seconds("processes", out) is None and native_seconds("ray", out) is None
