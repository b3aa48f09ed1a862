"""A service's wait for a CPU counted over every thread of its process (``runners.thread_waits``).

The waits are made certain, not hoped for: the process is pinned to one CPU and its threads
hash (native code, without the interpreter lock), so while two run, one of them waits. The
assertions are on what was counted (some wait, from a thread that ended before the body did),
never on how long anything took.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from runners.thread_waits import effective

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/thread-self/schedstat") or not hasattr(os, "sched_setaffinity"),
                                reason="needs Linux schedstat and CPU affinity")

CHILD = r"""
import hashlib, os, sys, threading, time
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
from runners.thread_waits import THREAD_WAITS, EVERY_S

data = b"x" * (1 << 20)
def hash_for(n):
    for _ in range(n):
        hashlib.sha256(data).digest()

# a body shorter than a sampling interval: never read, so None (its body's own wait stands)
THREAD_WAITS.start()
short = THREAD_WAITS.stop()

# a body whose two pool threads compete for the one CPU, and end before it does
def own_wait():
    with open("/proc/thread-self/schedstat") as f:
        return int(f.read().split()[1]) / 1e9

THREAD_WAITS.start()
w0, t0 = own_wait(), time.monotonic()
threads = [threading.Thread(target=hash_for, args=(200,)) for _ in range(2)]
[t.start() for t in threads]
[t.join() for t in threads]
while time.monotonic() - t0 < 3 * EVERY_S:  # run through two of the sampler's wake-ups
    time.sleep(EVERY_S / 5)
waited, body = THREAD_WAITS.stop(), own_wait() - w0
print(short, waited, body)
"""


def test_the_wait_of_threads_that_ended_before_the_body_is_counted_and_a_short_body_is_not_read():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", CHILD], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    short, waited, body = out.stdout.split()
    assert short == "None"
    # the pool threads waited for each other's CPU while the body slept: more than the body's own
    assert float(waited) > float(body)


def test_threads_ready_at_once_delay_the_service_once():
    # one thread, ready a third of the time, that waited 1 s: 1 s
    assert effective(1.0, cpu_s=1.0, wall_s=6.0) == pytest.approx(1.0)
    # two threads ready throughout 4 s, each on a CPU 2 s and waiting 2 s: 2 s, not 4
    assert effective(4.0, cpu_s=4.0, wall_s=4.0) == pytest.approx(2.0)
    # never more than the span, nor anything for an empty one
    assert effective(10.0, cpu_s=0.0, wall_s=3.0) <= 3.0
    assert effective(1.0, cpu_s=1.0, wall_s=0.0) == 0.0
