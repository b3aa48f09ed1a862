"""The machine model (``orchestrator.planning.machine``): given durations and CPU demands
in, a predicted stretch out. Every expected number is worked out by hand in the docstring."""
from __future__ import annotations

import pytest

from orchestrator.planning.estimates import Observed, estimate, estimates
from orchestrator.planning.graph import Graph
from orchestrator.planning.machine import Demand, Machine, predict
from orchestrator.planning.model import Service
from orchestrator.planning.planner import make_plan


def _graph(*services: Service) -> Graph:
    return Graph(list(services))


def _predict(g: Graph, est, demand, slots, machine, cpu_aware=False):
    rank = make_plan(g, slots).priority
    return predict(g, est, demand, rank, slots, machine, cpu_aware)


def test_two_cpu_bound_services_share_one_core():
    """a, b: 10 s of CPU each, both running on 1 core: each gets half of it, both end at 20 s."""
    g = _graph(Service("a", duration=10, kind="cpu"), Service("b", duration=10, kind="cpu"))
    p = _predict(g, [10, 10], [Demand(1.0), Demand(1.0)], 2, Machine(cores=1))
    assert p.makespan_s == pytest.approx(20.0)
    assert p.stretch == pytest.approx([2.0, 2.0])


def test_enough_cores_means_no_stretch():
    g = _graph(Service("a", duration=10, kind="cpu"), Service("b", duration=10, kind="cpu"))
    assert _predict(g, [10, 10], [Demand(1.0), Demand(1.0)], 2, Machine(cores=2)).makespan_s == pytest.approx(10.0)


def test_sleeping_services_do_not_compete_for_cores():
    g = _graph(*(Service(f"s{i}", duration=3) for i in range(8)))
    p = _predict(g, [3] * 8, [Demand(0.0)] * 8, 8, Machine(cores=1))
    assert p.makespan_s == pytest.approx(3.0)


def test_half_io_service_stretches_only_its_cpu_half():
    """a and b each spend half of their 10 s on a CPU; on 1 core the CPU halves take twice as long:
    rate = 1 / (0.5 + 0.5 * 1.0/1) while total demand 1.0 <= 1 core: no stretch at all."""
    g = _graph(Service("a", duration=10), Service("b", duration=10))
    p = _predict(g, [10, 10], [Demand(0.5), Demand(0.5)], 2, Machine(cores=1))
    assert p.makespan_s == pytest.approx(10.0)
    # three of them want 1.5 cores: the CPU halves slow by 1.5, so 10 * (0.5 + 0.5 * 1.5) = 12.5
    g3 = _graph(*(Service(n, duration=10) for n in "abc"))
    assert _predict(g3, [10] * 3, [Demand(0.5)] * 3, 3, Machine(cores=1)).makespan_s == pytest.approx(12.5)


def test_small_islands_stretch_the_long_pole_unless_cpu_aware():
    """pole: 10 s of CPU; s1..s4: 1 s of CPU each; 2 cores, 5 slots.

    Not cpu-aware: all five start; 5 cores wanted on 2, each runs at 0.4: the small ones end at
    2.5 s, the pole has done 1 s of its 10 and finishes alone at 2.5 + 9 = 11.5 s.
    cpu-aware: the pole and one small service fit; the four small ones run one after another on
    the second core (4 s), the pole never shares its core: 10 s."""
    g = _graph(Service("pole", duration=10, kind="cpu"), *(Service(f"s{i}", duration=1, kind="cpu") for i in range(4)))
    est, demand = [10, 1, 1, 1, 1], [Demand(1.0)] * 5
    assert _predict(g, est, demand, 5, Machine(cores=2)).makespan_s == pytest.approx(11.5)
    aware = _predict(g, est, demand, 5, Machine(cores=2), cpu_aware=True)
    assert aware.makespan_s == pytest.approx(10.0)
    assert aware.stretch[0] == pytest.approx(1.0)


def test_the_gil_is_one_core_whatever_the_machine_has():
    """Threads runner, two pure-Python services holding the lock all the time, 8 cores: 2x."""
    g = _graph(Service("a", duration=4, kind="cpu"), Service("b", duration=4, kind="cpu"))
    demand = [Demand(1.0, gil=1.0)] * 2
    assert _predict(g, [4, 4], demand, 2, Machine(cores=8, gil_procs=(2,))).makespan_s == pytest.approx(8.0)
    # a service that releases the lock (gil 0) is not slowed by it
    mixed = [Demand(1.0, gil=1.0), Demand(1.0, gil=0.0)]
    assert _predict(g, [4, 4], mixed, 2, Machine(cores=8, gil_procs=(2,))).makespan_s == pytest.approx(4.0)


def test_runner_overhead_is_paid_once_per_hop():
    """A chain of three 1 s services with 0.1 s of runner overhead each: 3.3 s."""
    g = _graph(Service("a", duration=1), Service("b", after=("a",), duration=1), Service("c", after=("b",), duration=1))
    p = _predict(g, [1, 1, 1], [Demand(0.0)] * 3, 4, Machine(cores=2, overhead_s=0.1))
    assert p.makespan_s == pytest.approx(3.3)


def test_plan_reports_prediction_cores_and_the_cpu_bound():
    """Four 3 s CPU services on 2 cores, 4 slots: slot-only simulation says 3 s; the CPU work is
    12 s on 2 cores, so the bound and the prediction are both 6 s."""
    g = _graph(*(Service(f"c{i}", duration=3, kind="cpu") for i in range(4)))
    plan = make_plan(g, 4, estimates=estimates(g), machine=Machine(cores=2, source="test"))
    data = plan.to_json()
    assert data["simulated_makespan_s"] == pytest.approx(3.0)
    assert data["predicted_makespan_s"] == pytest.approx(6.0)
    assert data["lower_bound_s"] == pytest.approx(6.0)
    assert (data["cores"], data["cpu_work_s"], plan.constraint) == (2, pytest.approx(12.0), "cores")
    assert {s["estimate_source"] for s in data["services"].values()} == {"synthetic"}


# -- estimates -------------------------------------------------------------------------------------
def test_estimate_sources_in_order_of_preference():
    svc = Service("a", duration=2.0, estimate=5.0)
    assert estimate(svc, []).source == "declared" and estimate(svc, []).seconds == 5.0
    assert estimate(Service("a", duration=2.0), []).source == "synthetic"
    assert estimate(Service("a", call="m:f"), []) .source == "default"
    hist = [Observed(1.0, "threads"), Observed(9.0, "threads"), Observed(2.0, "threads")]
    e = estimate(svc, hist, "threads")
    assert (e.source, e.seconds, e.runs) == ("history", 2.0, 3)  # the median: 9 s was an outlier


def test_history_of_the_same_runner_wins_once_there_is_enough_of_it():
    hist = [Observed(5.0, "dask")] * 4 + [Observed(1.0, "threads")] * 2
    assert estimate(Service("a", call="m:f"), hist, "threads").seconds == 5.0  # 2 on threads: not enough
    hist += [Observed(1.0, "threads")]
    assert estimate(Service("a", call="m:f"), hist, "threads").seconds == 1.0


def test_cpu_demand_from_history_and_without_it():
    hist = [Observed(10.0, "processes", cpu_s=5.0), Observed(10.0, "processes", cpu_s=7.0),
            Observed(10.0, "processes", cpu_s=6.0)]
    assert estimate(Service("a", call="m:f"), hist, "processes").demand.cpu == pytest.approx(0.6)
    assert estimate(Service("s", duration=1.0), []).demand.cpu == 0.0
    assert estimate(Service("c", duration=1.0, kind="cpu"), []).demand.cpu == 1.0


# -- tuning ----------------------------------------------------------------------------------------
def test_recommends_the_smallest_limit_within_tolerance_of_the_best():
    """Six 2 s CPU services on 2 cores. Limit 1: 12 s. Limits 2, 3, 4 and 6: 6 s, the cores are the
    bottleneck. Limit 5 is worse: five share the 2 cores (0.4 each) and end at 5 s, then the sixth
    runs alone for 2 s: 7 s. The recommendation is 2, the smallest of the best."""
    from orchestrator.planning.tuning import recommend, sweep

    g = _graph(*(Service(f"c{i}", duration=2, kind="cpu") for i in range(6)))
    cands = sweep(g, estimates(g), Machine(cores=2), 6, (False,))
    by_limit = {c.max_concurrency: c.predicted_makespan_s for c in cands}
    assert by_limit[1] == pytest.approx(12.0)
    assert [by_limit[k] for k in (2, 3, 4, 6)] == pytest.approx([6.0] * 4)
    assert by_limit[5] == pytest.approx(7.0)
    assert recommend(cands).max_concurrency == 2


def test_sleeping_services_want_as_many_slots_as_they_can_get():
    from orchestrator.planning.tuning import default_concurrency

    g = _graph(*(Service(f"s{i}", duration=1) for i in range(6)))
    assert default_concurrency(g, estimates(g), Machine(cores=2), 8) == 6


def test_a_pool_is_tuned_around_its_current_limit():
    from orchestrator.planning.tuning import pool_choices, recommend, sweep

    assert pool_choices(4, 16) == [2, 3, 4, 5, 8]
    g = Graph([Service(f"w{i}", duration=1, pool="wh") for i in range(4)], pools={"wh": 1})
    best = recommend(sweep(g, estimates(g), Machine(cores=8), 4, (False,)))
    assert best.pools == {"wh": 2} and best.predicted_makespan_s == pytest.approx(2.0)


# -- back from measured to alone -------------------------------------------------------------------
def test_time_waiting_for_the_lock_comes_off_and_idle_time_stays():
    """a and b each used 1 s of the lock over the same 2 s: they waited 1 s each. c slept through it
    (used none): its 2 s stand. d ran alone, using the lock 80% of its 1 s: nothing to take off."""
    from orchestrator.planning.destretch import Span, alone_times

    spans = [Span(0, 2, 1.0), Span(0, 2, 1.0), Span(0, 2, 0.0), Span(5, 6, 0.8)]
    assert alone_times(spans) == pytest.approx([1.0, 1.0, 2.0, 1.0])
    # half-busy services that never filled the lock did not wait
    assert alone_times([Span(0, 2, 0.7), Span(0, 2, 0.7)]) == pytest.approx([2.0, 2.0])


def test_history_plans_from_alone_times_not_stretched_walls(tmp_path):
    """Three 0.5 s CPU services recorded on threads: a and b shared the lock for 1.1 s, and read back
    about 0.5 s each; d ran alone (0.54 s, waiting for nobody) and keeps its wall time. On processes
    the CPU wait the kernel reported comes off."""
    from orchestrator.inputs.history import AttemptRow, History

    with History(tmp_path) as h:
        for name, start, end, cpu in (("a", 0.0, 1.09, 0.5), ("b", 0.0, 1.10, 0.5), ("d", 1.10, 1.64, 0.5)):
            h.record(AttemptRow(service=name, run_id="r", runner="threads", attempt=1, outcome="completed",
                                start=start, end=end, cpu_s=cpu, gil_s=cpu))
        h.record(AttemptRow(service="p", run_id="r2", runner="processes", attempt=1, outcome="completed",
                            start=0.0, end=3.0, cpu_s=1.0, cpu_wait_s=1.0))
        obs = h.observed()
    assert [obs[n][0].duration_s for n in "abd"] == pytest.approx([0.5, 0.5, 0.54], abs=0.03)
    assert obs["a"][0].wall_s == pytest.approx(1.09)
    assert obs["p"][0].duration_s == pytest.approx(2.0)
