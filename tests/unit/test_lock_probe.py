"""The lock probe (``runners.lock_probe``): a thread's CPU that ran without the interpreter lock.
Python code holds the lock; hashlib on a large buffer computes with it released, as DuckDB does.
The bounds are wide: the probe samples moments, and what is asserted is which side of half."""
from __future__ import annotations

import hashlib
import threading
import time

import pytest

from runners.lock_probe import LockProbe


def _python(seconds: float) -> None:
    stop = time.thread_time() + seconds
    while time.thread_time() < stop:
        pass


def _native(seconds: float) -> None:
    data = b"x" * (64 << 20)
    stop = time.thread_time() + seconds
    while time.thread_time() < stop:
        hashlib.sha256(data).digest()


@pytest.mark.parametrize("body, native", [(_python, False), (_native, True)])
def test_the_probe_tells_python_from_native_code(body, native):
    """The body runs on a thread of its own; this thread samples it, as the probe's sampler does
    (here already on a core, so that its wake-up cannot take the body's core on a busy machine)."""
    probe = LockProbe()
    probe._sampler = threading.current_thread()  # no sampler thread of its own: this test samples
    result = {}

    def run():
        probe.start()
        t0 = time.thread_time()
        body(0.5)
        result["used"] = time.thread_time() - t0
        result["native"] = probe.stop()

    worker = threading.Thread(target=run)
    worker.start()
    while worker.is_alive():
        time.sleep(0.003)  # lets a Python body take the lock between samples
        probe.sample()
    worker.join()
    share = result["native"] / result["used"]
    # (on a machine whose cores are all taken by other work the body is often off a core while
    # sampled, and native code is under-read: README, "Predicting the run")
    assert (share > 0.3) if native else (share < 0.2), share


def test_a_body_not_started_owes_nothing_and_the_share_goes_to_the_history_s_lock_time():
    from orchestrator.execution.recording import gil_seconds, native_seconds
    from runners.base import Outcome

    assert LockProbe().stop() == 0.0
    out = Outcome("k#1", True, 0.0, 1.0, "w", thread_cpu_s=1.0, native_cpu_s=0.8)
    assert gil_seconds("threads", out) == pytest.approx(0.2) and native_seconds("dask", out) == 0.8
    assert gil_seconds("processes", out) is None and native_seconds("ray", out) is None
