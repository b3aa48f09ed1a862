"""Timeouts on every runner: one refresh each, where the first two services hang.

    max_concurrency=2

    hang_a -> after_hang        hang_a, hang_b block 20 s, timeout=1 s, estimate 100: they
    hang_b                      take both slots first, and everything else waits for a slot
    w1 -> w5
    w2   w3   w4                0.05 s each

A timed-out attempt fails with a TimeoutError, its descendants are skipped, and the
services that were waiting for its slot run, on a worker that is really free: the hung
body must not keep it (a runner stops it, or has a spare). Each hang body records the pid
of the process running it as it starts, and its end time when it returns.

Processes, Dask and Ray stop a timed-out body (its worker process is killed, or restarted
by its nanny): there the bodies are never released, so a body that was not stopped would
run on and write its end time. A thread cannot be stopped: on the threads runner
``ReleaseWhenSettled`` lets the bodies return once every other service has settled, so
that the abandoned threads cost the test no more than that.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from orchestrator.flows.flow import run
from orchestrator.planning.graph import Graph
from orchestrator.planning.model import Service
from tests.helpers.observers import ReleaseWhenSettled
from tests.helpers.processes import gone, read_pid, wait_until
from tests.helpers.schedule import attempt_intervals, max_overlap, order_violations
from tests.prefect_fixtures import api, readback

HELPERS = "tests.helpers.services"
HANGS = ["hang_a", "hang_b"]
HANG_S = 20.0
SLOTS = 2
STUCK_S = 8.0  # the body in the exit test: what the exit costs while the threads runner waits
ROOT = Path(__file__).resolve().parent.parent


def timeout_graph(tmp, releasable: bool) -> Graph:
    """``releasable``: the hang bodies return once the file ``tmp/release`` exists (threads)."""
    hang = {"seconds": HANG_S, **({"release": str(tmp / "release")} if releasable else {})}
    return Graph([
        *[Service(h, call=f"{HELPERS}:hang", timeout=1.0, estimate=100.0,
                  params={**hang, "ended": str(tmp / f"{h}.ended"), "pidfile": str(tmp / f"{h}.pid")})
          for h in HANGS],
        Service("after_hang", after=("hang_a",), duration=0.05),
        *[Service(f"w{i}", duration=0.05) for i in (1, 2, 3, 4)],
        Service("w5", after=("w1",), duration=0.05),
    ])


@pytest.fixture(scope="module")
def timed_out(runner_name, prefect_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"timeouts-{runner_name}")
    graph = timeout_graph(tmp, releasable=runner_name == "threads")
    others = [n for n in graph.names if n not in HANGS]
    try:
        with api(prefect_server):
            report = run(graph, runner_name, max_concurrency=SLOTS, workers=SLOTS,
                         observers=[ReleaseWhenSettled(tmp / "release", others)])
    finally:
        (tmp / "release").touch()  # whatever happened, no thread outlives the test
    rb = readback(prefect_server, report["flow_run_id"], graph.names)
    return SimpleNamespace(runner=runner_name, graph=graph, report=report, api=rb, tmp=tmp,
                           others=[n for n in others if n != "after_hang"])


def test_timed_out_services_fail_with_timeout_error(timed_out):
    services = timed_out.report["services"]
    for name in HANGS:
        s = services[name]
        assert (s["state"], s["attempts"]) == ("failed", 1), name
        assert s["error"].startswith("TimeoutError"), s["error"]
    assert (services["after_hang"]["state"], services["after_hang"]["skipped_because"]) == ("skipped", "hang_a")


def test_services_waiting_behind_timed_out_ones_still_ran(timed_out):
    services = timed_out.report["services"]
    assert all(services[n]["attempts"] >= 1 for n in timed_out.others)
    # they were waiting: the hangs held both slots until the first timeout
    timed_out_at = min(services[h]["end"] for h in HANGS)
    assert min(services[n]["attempt_history"][0]["start"] for n in timed_out.others) >= timed_out_at
    assert order_violations(timed_out.report, timed_out.graph.edges) == []
    assert max_overlap(attempt_intervals(timed_out.report)) == SLOTS  # the two hangs, at once


def test_a_timed_out_body_gives_its_worker_back(timed_out):
    """Threads: every other service settles before any hang body is let go, so if they could
    start only once a body returned, they started after its recorded end. Processes, Dask,
    Ray: the process that ran each body is stopped, and the body never reached its end."""
    services = timed_out.report["services"]
    first_other = min(services[n]["attempt_history"][0]["start"] for n in timed_out.others)
    for h in HANGS:
        ended = timed_out.tmp / f"{h}.ended"
        pid = read_pid(timed_out.tmp / f"{h}.pid", timeout=30)
        if timed_out.runner == "threads":  # abandoned, not stopped: it returns once released
            assert pid == os.getpid()
            wait_until(ended.exists, 30, f"{h}'s released body to return")
            assert first_other < float(ended.read_text()), f"the others waited for {h}'s body to return"
        else:
            assert pid != os.getpid()
            wait_until(lambda pid=pid: gone(pid), 90,
                       f"the {timed_out.runner} worker {pid} that ran {h} to be stopped")
            # the process is gone, so the body cannot write its end any more: it never did
            assert not ended.exists(), f"{h}'s body ran to its end: its worker was not stopped"


def test_a_timeout_costs_other_services_nothing(timed_out):
    """On Dask both hung workers are restarted while the others are being dispatched, some
    of them to those very workers: the runner resubmits what its own restarts killed, so
    no service loses an attempt to it."""
    services = timed_out.report["services"]
    got = {n: (services[n]["state"], services[n]["attempts"], services[n]["lost_worker"])
           for n in timed_out.others}
    assert got == {n: ("completed", 1, False) for n in timed_out.others}
    assert (timed_out.report["failed"], timed_out.report["skipped"]) == (HANGS, ["after_hang"])


def test_timed_out_task_runs_are_failed_in_prefect(timed_out):
    states = {n: (tr.state.type.value, tr.state.name) for n, tr in timed_out.api.task_runs.items()}
    assert states["hang_a"] == states["hang_b"] == ("FAILED", "Failed")
    assert states["after_hang"] == ("CANCELLED", "Skipped")
    assert "TimeoutError" in (timed_out.api.task_runs["hang_a"].state.message or "")
    assert timed_out.api.flow_run.state.type.value == "FAILED"


def test_a_timed_out_thread_does_not_keep_the_process_alive(tmp_path):
    """The threads runner cannot stop a body, but promises its thread dies with the process.

    A refresh in a subprocess times out a body that would run ``STUCK_S`` and then write a
    file; the subprocess returns from run and exits. If the exit waited for the thread, the
    body got to write the file."""
    ended = tmp_path / "ended"
    code = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from orchestrator.execution.dispatcher import Dispatcher
from orchestrator.planning.graph import Graph
from orchestrator.planning.model import Service
from orchestrator.planning.planner import make_plan
from runners.threads import ThreadRunner

stuck = Service("stuck", call="{HELPERS}:hang", timeout=0.5,
                params={{"seconds": {STUCK_S}, "release": {str(tmp_path / "never")!r}, "ended": {str(ended)!r}}})
with ThreadRunner(workers=1) as runner:
    runs = Dispatcher(make_plan(Graph([stuck]), 1), runner).run()
print(runs["stuck"].state, runs["stuck"].error.split(":")[0])
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=STUCK_S + 60)
    assert done.stdout.split() == ["failed", "TimeoutError"], done.stderr[-2000:]
    assert not ended.exists(), "the process waited for the timed-out body before exiting"
