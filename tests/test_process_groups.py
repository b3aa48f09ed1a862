"""Processes runner: nothing a service starts outlives its worker, or holds its slot.

    spawner (starts a Pool or forks, then hangs; timeout 1 s) -> spawner_child
    queued_1, queued_2, queued_3                 max_concurrency 1, one worker process

The spawner's own processes inherit its worker's result pipe. When the worker is killed at
the timeout, they would keep the pipe open: a runner that waits for the pipe's end of file
never frees the slot (the queued services never start) and leaves them running as orphans.
Each worker leads a process group of its own, the whole group is killed, and the worker's
end is seen from the process itself (its pidfd), not from the pipe.

Real processes, read from the process table (psutil); the dispatcher and the runner are
driven directly, without Prefect. Nothing asserts a duration: waits are bounded only so that
a broken promise fails a test instead of hanging it.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest

from orchestrator.execution.dispatcher import Dispatcher
from orchestrator.planning.graph import Graph
from orchestrator.planning.model import Service
from orchestrator.planning.planner import make_plan
from runners.processes import ProcessRunner
from tests.helpers.processes import gone, wait_until

BODIES = "tests.helpers.worker_faults"
ROOT = Path(__file__).resolve().parent.parent
QUEUED = ["queued_1", "queued_2", "queued_3"]
pytestmark = pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs Linux 5.3+ (pidfd)")


def spawned(pidfile: Path) -> dict:
    """What the spawner body recorded: its worker's pid and the pids of its own processes."""
    return json.loads(pidfile.read_text())


def run_bounded(graph: Graph, runner, slots: int, limit: float = 120.0) -> dict:
    """``Dispatcher(...).run()`` on a thread; fails the test (instead of hanging it) if the
    run has not returned after ``limit`` s, e.g. because a slot was never freed."""
    result: dict = {}
    dispatcher = Dispatcher(make_plan(graph, slots), runner)
    thread = threading.Thread(target=lambda: result.update(runs=dispatcher.run()), daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        dispatcher.cancel("the test gave up")
        thread.join(30)
        pytest.fail(f"the run did not finish within {limit:g} s: a slot stayed blocked; "
                    f"states: {({n: r.state for n, r in dispatcher.runs.items()})}")
    return result["runs"]


@pytest.mark.parametrize("how", ["pool", "fork"])
def test_a_timed_out_service_that_started_processes_frees_its_slot_and_leaves_none(tmp_path, how):
    """One worker, one slot: the spawner (``multiprocessing.Pool`` or ``os.fork``, children
    sleeping an hour) takes it and hangs. At its timeout the slot goes to the queued services,
    which all complete on a replacement worker, and every process the spawner started is gone."""
    pidfile = tmp_path / "spawned.json"
    graph = Graph([
        Service("spawner", call=f"{BODIES}:spawn_and_hang", params={"pidfile": str(pidfile), "how": how},
                timeout=1.0, estimate=100.0),
        Service("spawner_child", after=("spawner",), duration=0.05),
        *[Service(n, duration=0.05) for n in QUEUED],
    ])
    with ProcessRunner(workers=1) as runner:
        runs = run_bounded(graph, runner, 1)
        assert pidfile.exists(), "the spawner never got to record its processes"
        pids = spawned(pidfile)
        assert len(pids["children"]) == (3 if how == "fork" else 2), pids
        spawner = runs["spawner"]
        assert (spawner.state, spawner.attempts) == ("failed", 1)
        assert spawner.error.startswith("TimeoutError"), spawner.error
        assert runs["spawner_child"].state == "skipped"
        assert [runs[n].state for n in QUEUED] == ["completed"] * 3
        # the queued services ran on a new worker: the killed one was replaced, not waited for
        assert {runs[n].worker.split(":", 1)[1] for n in QUEUED} != {str(pids["worker"])}
        everything = [pids["worker"], *pids["children"]]
        wait_until(lambda: all(gone(p) for p in everything), 30, f"the spawner's processes {everything} to end")
    assert all(gone(p) for p in everything)


def test_processes_a_completed_service_left_behind_end_with_the_runner(tmp_path):
    """A service that forks children (sleeping an hour) and returns completes; its children
    do not outlive the runner: leaving it kills every worker's process group."""
    pidfile = tmp_path / "spawned.json"
    graph = Graph([Service("spawner", call=f"{BODIES}:spawn_and_hang",
                           params={"pidfile": str(pidfile), "how": "fork", "then": "return"})])
    with ProcessRunner(workers=1) as runner:
        runs = run_bounded(graph, runner, 1)
        assert runs["spawner"].state == "completed", runs["spawner"].error
        pids = spawned(pidfile)
        assert not any(gone(p) for p in pids["children"]), "the children were meant to outlive the service"
    everything = [pids["worker"], *pids["children"]]
    # SIGKILL is sent before __exit__ returns; the kernel ends the processes right after
    wait_until(lambda: all(gone(p) for p in everything), 30, f"{everything} to end after the runner closed")


def test_workers_lead_process_groups_of_their_own(tmp_path):
    """A signal to critpath's process group (a terminal's Ctrl-C, GNU ``timeout``) must not reach
    the workers (critpath cancels their work itself): each leads a session of its own."""
    pidfile = tmp_path / "spawned.json"
    graph = Graph([Service("spawner", call=f"{BODIES}:spawn_and_hang",
                           params={"pidfile": str(pidfile), "how": "fork", "then": "return"})])
    with ProcessRunner(workers=2) as runner:
        run_bounded(graph, runner, 1)
        worker = spawned(pidfile)["worker"]
        assert os.getsid(worker) == worker != os.getsid(0)
        assert os.getpgid(worker) == worker != os.getpgid(0)
        assert {os.getpgid(p) for p in spawned(pidfile)["children"]} == {worker}


SCRIPT = """
import sys
sys.path.insert(0, {root!r})
from orchestrator.execution.dispatcher import Dispatcher
from orchestrator.planning.graph import Graph
from orchestrator.planning.model import Service
from orchestrator.planning.planner import make_plan
from runners.processes import ProcessRunner

graph = Graph([Service("spawner", call="{bodies}:spawn_and_hang", params={{"pidfile": {pidfile!r}, "how": "pool"}}),
               Service("idle_worker_stays", duration=0.05)])
with ProcessRunner(workers=2) as runner:
    Dispatcher(make_plan(graph, 2), runner).run()
"""


def test_nothing_outlives_critpath_killed_with_sigkill(tmp_path):
    """``kill -9`` of the process that owns the runner (no ``__exit__``, no handler runs), while
    one worker runs a service whose pool sleeps an hour and the other is idle: every worker and
    every process the service started ends (each worker's guard kills its group)."""
    pidfile = tmp_path / "spawned.json"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT.format(root=str(ROOT), bodies=BODIES, pidfile=str(pidfile))],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: pidfile.exists() or proc.poll() is not None, 120, "the spawner to record its processes")
        assert pidfile.exists(), proc.communicate()[1]
        owner = psutil.Process(proc.pid)
        workers = [c.pid for c in owner.children() if "runners.procworker" in " ".join(c.cmdline())]
        assert len(workers) == 2, workers
        pids = spawned(pidfile)
        everything = sorted({*workers, pids["worker"], *pids["children"]})
        assert not any(gone(p) for p in everything)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    wait_until(lambda: all(gone(p) for p in everything), 30, f"{everything} to end after critpath's kill -9")
