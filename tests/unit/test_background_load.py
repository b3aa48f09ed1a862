"""The machine's background load (issue 11): what everything but a run's services keeps busy
(critpath's bookkeeping, the Prefect server, a local cluster's scheduler, other work), measured
per run into the history store and taken off the cores by the machine model.

Deterministic: recorded loads and attempts in, a background and a prediction out."""
from __future__ import annotations

import sqlite3

import pytest

from orchestrator.execution.events import Event, ServiceRun
from orchestrator.execution.machines import machine_for, runs_here
from orchestrator.execution.recording import HistoryObserver
from orchestrator.inputs.history import AttemptRow, History, MachineLoad
from orchestrator.planning.estimates import background
from orchestrator.planning.graph import Graph
from orchestrator.planning.machine import Demand, Machine, free_cores, predict
from orchestrator.planning.model import Service
from orchestrator.planning.planner import make_plan


def _attempt(service, run_id, cpu_s, runner="processes", outcome="completed"):
    return AttemptRow(service=service, run_id=run_id, runner=runner, attempt=1, outcome=outcome,
                      start=10.0, end=11.0, cpu_s=cpu_s)


def test_background_is_the_busy_time_less_the_services_cpu_over_the_run(tmp_path):
    with History(tmp_path) as h:
        h.record(_attempt("a", "r1", 1.0))
        h.record(_attempt("b", "r1", 2.0))
        h.record_load(MachineLoad("r1", "processes", start=10.0, end=12.0, busy_s=3.5))  # 0.5 s of others in 2 s
        h.record(_attempt("a", "r2", 1.0))
        h.record_load(MachineLoad("r2", "processes", start=0.0, end=4.0, busy_s=2.0))  # 1 s in 4 s
        h.record(_attempt("a", "r3", 1.0, runner="dask"))
        h.record_load(MachineLoad("r3", "dask", start=0.0, end=1.0, busy_s=1.9))
        assert h.background("processes") == pytest.approx([0.25, 0.25])
        assert h.background("dask") == pytest.approx([0.9])
        assert h.background("ray") == []


def test_a_run_with_an_attempt_whose_cpu_nobody_measured_does_not_count(tmp_path):
    """A cancelled or lost attempt used CPU that no one measured: it would read as background."""
    with History(tmp_path) as h:
        h.record(_attempt("a", "r1", 1.0))
        h.record(_attempt("b", "r1", None, outcome="cancelled"))
        h.record_load(MachineLoad("r1", "processes", start=0.0, end=1.0, busy_s=1.8))
        assert h.background("processes") == []


def test_loads_go_with_the_runs_pruned_away(tmp_path):
    with History(tmp_path, keep_runs=2) as h:
        for k in range(4):
            h.record(_attempt("a", f"r{k}", 1.0))
            h.record_load(MachineLoad(f"r{k}", "processes", 0.0, 2.0, 1.0 + k * 0.2))
        h.prune()
        assert h.background("processes") == pytest.approx([0.2, 0.3])  # r2, r3


def test_a_history_file_from_before_loads_gains_the_table(tmp_path):
    with History(tmp_path) as h:
        h.record(_attempt("a", "r1", 1.0))
    with sqlite3.connect(tmp_path / "history.sqlite") as db:
        db.execute("DROP TABLE machine_load")
    with History(tmp_path) as h:
        assert h.background("processes") == []
        h.record_load(MachineLoad("r1", "processes", 0.0, 2.0, 1.5))
        assert h.background("processes") == pytest.approx([0.25])


def test_the_planner_takes_the_median_of_recent_runs():
    assert background([0.1, 0.9, 0.2]) == pytest.approx(0.2)
    assert background([]) == 0.0


def test_the_observer_measures_from_the_first_dispatch_to_the_last_end(tmp_path):
    readings = iter([100.0, 101.0, 103.0])  # busy CPU seconds at: first dispatch, a's end, b's end
    with History(tmp_path) as h:
        obs = HistoryObserver(h, "r1", "processes", busy=lambda: next(readings))
        a, b = ServiceRun("a"), ServiceRun("b")
        obs.on_event(Event.DISPATCH, a, 5.0)
        obs.on_event(Event.DISPATCH, b, 5.1)  # not read again: only the first dispatch
        obs.on_event(Event.COMPLETE, a, 6.0)
        obs.on_event(Event.COMPLETE, b, 7.0)
        obs.close()
        load = h._db.execute('SELECT start, "end", busy_s FROM machine_load WHERE run_id = ?', ("r1",)).fetchone()
    assert load == pytest.approx((5.0, 7.0, 3.0))


def test_a_cluster_elsewhere_has_no_background_from_this_machine():
    class Remote:
        address, cores, capacity = "tcp://10.0.0.5:8786", 16.0, 16

    assert not runs_here(Remote()) and runs_here(None)
    assert machine_for("dask", Remote(), loads=[0.5]).background == 0.0
    assert machine_for("processes", None, loads=[0.5]).background == pytest.approx(0.5)


def _fanout(n=8, seconds=0.5):
    return Graph([Service(f"w{i}", duration=seconds, kind="work") for i in range(n)])


def _predicted(g, limit, machine):
    rank = make_plan(g, limit).priority
    return predict(g, [0.5] * len(g), [Demand(1.0)] * len(g), rank, limit, machine).makespan_s


def test_services_saturating_the_cores_get_what_the_background_leaves():
    """8 x 0.5 s of CPU on 2 cores: 2 s on an idle machine, 4 / 1.8 s beside a background of 0.2."""
    g = _fanout()
    assert _predicted(g, 4, Machine(cores=2)) == pytest.approx(2.0)
    assert _predicted(g, 4, Machine(cores=2, background=0.2)) == pytest.approx(4 / 1.8)


def test_one_service_at_a_time_fits_beside_the_background():
    """At concurrency 1 one core is idle anyway: the background does not slow the run."""
    assert _predicted(_fanout(), 1, Machine(cores=2, background=0.2)) == pytest.approx(4.0)


def test_a_background_wanting_more_than_a_fair_share_gets_one_runnable_share():
    m = Machine(cores=2, background=5.0)
    assert free_cores(m, 1) == pytest.approx(1.0)
    assert free_cores(m, 3) == pytest.approx(0.5)
    assert free_cores(Machine(cores=2, background=0.3), 3) == pytest.approx(1.7)


def test_critpath_history_says_the_background_per_runner(tmp_path):
    from orchestrator.ui.history_view import render, summarise

    with History(tmp_path) as h:
        h.record(_attempt("a", "r1", 1.0))
        h.record_load(MachineLoad("r1", "processes", start=0.0, end=2.0, busy_s=1.5))
        h.record(_attempt("a", "r2", 1.0, runner="threads"))  # no load measured: no line for threads
        data = summarise(h, None, [], None)
    assert data["background"] == {"processes": {"runs": 1, "cores": pytest.approx(0.25)}}
    assert "background on processes: 0.25 cores" in render(data)
