"""Prefect's bookkeeping in a process of its own (``flows.recorder_process``, issue 15): from
``MIN_SERVICES`` services on. It outlives neither critpath nor its run, and a Ctrl-C to the whole
process group, which critpath answers by cancelling the refresh, does not stop it before it has
recorded the cancel. (The runner contract holds with it: tests/test_contract.py runs it on
threads and Dask.)"""
from __future__ import annotations

import signal
from contextlib import contextmanager
from pathlib import Path

import psutil

from orchestrator.flows.recorder_process import MIN_SERVICES
from tests.helpers.graphs import FAULTS
from tests.helpers.processes import Cli, gone, read_pid, wait_until
from tests.helpers.projects import graph_file, last_report
from tests.prefect_fixtures import readback

#: an upper bound on a hang, not a measurement: ``long`` would sleep 60 s
EXIT_BOUND_S = 30
CHILD = "orchestrator.flows.recorder_process"


def _large_project(project: Path) -> Path:
    """MIN_SERVICES quick services, then ``long`` (records its pid, sleeps 60 s) -> after_long."""
    pidfile = project / "long.pid"
    quick = [{"name": f"quick_{i}", "duration": 0.01} for i in range(MIN_SERVICES)]
    graph_file(project, [*quick,
                         {"name": "long", "after": ["quick_0"], "call": f"{FAULTS}:die_once",
                          "params": {"pidfile": str(pidfile), "seconds": 60}},
                         {"name": "after_long", "after": ["long"], "duration": 0.01}])
    return pidfile


def _children(pid: int) -> list[psutil.Process]:
    out = []
    for p in psutil.Process(pid).children(recursive=True):
        try:
            if CHILD in " ".join(p.cmdline()):
                out.append(p)
        except psutil.Error:
            pass
    return out


def _gone(procs: list[psutil.Process]) -> bool:
    return all(gone(p.pid) for p in procs)


@contextmanager
def _large_refresh(folder: Path, api_url: str):
    """``critpath run`` of ``_large_project`` with ``long`` started: (its Cli, its bookkeeping process)."""
    pidfile = _large_project(folder)
    with Cli("run", "--graph", "g.json", "--runner", "threads", "--workers", "4", cwd=folder, api_url=api_url) as cli:
        read_pid(pidfile)
        keepers = _children(cli.proc.pid)
        assert len(keepers) == 1, "a refresh this large keeps its books in a process of its own"
        yield cli, keepers


def test_ctrl_c_to_the_group_is_recorded_as_cancelled_and_the_process_ends(prefect_server, tmp_path):
    with _large_refresh(tmp_path, prefect_server) as (cli, keepers):
        cli.signal_group(signal.SIGINT)  # the child gets it too, and must stay to record the cancel
        code = cli.wait(EXIT_BOUND_S)
    assert code == 130, f"exit status {code} (None: still running)\n{cli.stdout}{cli.stderr}"
    assert "Traceback" not in cli.stderr, cli.stderr
    assert _gone(keepers)
    report = last_report(tmp_path)
    assert report["prefect_errors"] == [] and report["prefect_confirmed"] is True
    rb = readback(prefect_server, report["flow_run_id"], ["long", "quick_0"])
    assert rb.task_runs["long"].state.type.value == "CANCELLED"
    assert rb.task_runs["quick_0"].state.type.value == "COMPLETED"


def test_kill_9_of_critpath_ends_its_bookkeeping_process(prefect_server, tmp_path):
    with _large_refresh(tmp_path, prefect_server) as (cli, keepers):
        cli.proc.kill()
        cli.proc.wait(30)
    # its stdin closes with critpath: it delivers what it has (a few seconds at most) and exits
    wait_until(lambda: _gone(keepers), EXIT_BOUND_S, "the bookkeeping process to end after critpath's kill -9")


def test_a_folded_dispatch_still_gives_prefect_the_running_start(prefect_server):
    """When the process falls behind, a first attempt's Running state travels inside its final
    state's event: the task run is still Completed, with its start time and one run."""
    import time

    from prefect import flow
    from prefect.context import FlowRunContext

    from orchestrator.execution.events import Event
    from orchestrator.flows.recorder import Bookkeeper, books_of
    from orchestrator.planning.graph import Graph
    from orchestrator.planning.model import Service
    from runners.base import Outcome
    from tests.prefect_fixtures import api

    graph = Graph([Service("quick", duration=0.01), Service("after", after=("quick",), duration=0.01)])
    t0 = time.time()
    ids = {}

    @flow(name="critpath-folding", persist_result=False)
    def books():
        keeper = Bookkeeper(books_of(graph), FlowRunContext.get().flow_run.id)
        for name, at in (("quick", t0), ("after", t0 + 1)):
            out = Outcome(f"{name}#1", True, at + 0.1, at + 0.5, "here")
            keeper.apply((Event.DISPATCH, name, at, 1, None, {}), announce=name != "quick")
            keeper.apply((Event.COMPLETE, name, at + 0.6, 1, None, {"outcome": out}))
        keeper.finish()
        ids["flow_run"] = str(FlowRunContext.get().flow_run.id)
        return keeper.errors, keeper.confirmed

    with api(prefect_server):
        errors, confirmed = books()
    assert (errors, confirmed) == ([], True)
    rb = readback(prefect_server, ids["flow_run"], graph.names)
    for name in graph.names:  # folded or not, Prefect holds the same record
        tr = rb.task_runs[name]
        assert (tr.state.name, tr.run_count) == ("Completed", 1), name
        assert tr.start_time is not None and tr.end_time > tr.start_time, name
