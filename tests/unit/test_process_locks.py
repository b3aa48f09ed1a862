"""One interpreter lock per worker process: Dask's threads in the machine model and in history.

A local Dask cluster runs 8 slots on 2 CPUs as 2 worker processes of 4 threads. The services
in one process share its interpreter lock; across processes they share only the cores. These
tests record such a run by hand, read it back, and predict from it; every number is worked out
in the docstring. The threads runner (one process, one lock) must give the answers it gave before.

    process h:1   w0 w1 w2 w3   (4 threads, one lock)
    process h:2   w4 w5 w6 w7   (4 threads, one lock)
"""
from __future__ import annotations

import pytest

from orchestrator.execution.machines import shared_locks
from orchestrator.execution.recording import gil_seconds, process_of
from orchestrator.inputs.history import AttemptRow, History
from orchestrator.planning.estimates import estimates
from orchestrator.planning.graph import Graph
from orchestrator.planning.machine import Demand, Machine, predict
from orchestrator.planning.model import Service
from orchestrator.planning.planner import make_plan
from runners.layout import local_dask

WORK_S = 0.5  # each service: half a second of pure-Python CPU work, holding its process's lock throughout


def fanout(n: int = 8) -> Graph:
    return Graph([Service(f"w{i}", duration=WORK_S, kind="work") for i in range(n)])


def _predict(g: Graph, est, demand, slots, machine):
    return predict(g, est, demand, make_plan(g, slots).priority, slots, machine)


def record_dask_warmups(h: History, runs: int = 3) -> None:
    """Three warm-up runs at 8 slots on 2 processes x 4 threads, 2 cores. In each process four
    services take turns on its lock: 4 x 0.5 s of work end together at 2.0 s. Two lock holders on
    two cores never wait for a core (cpu_wait 0); each used 0.5 s of its thread's CPU in 2.0 s."""
    for r in range(runs):
        t0 = 100.0 * r
        for i in range(8):
            h.record(AttemptRow(service=f"w{i}", run_id=f"warm{r}", runner="dask", attempt=1, outcome="completed",
                                start=t0, end=t0 + 2.0, cpu_s=WORK_S, gil_s=WORK_S, cpu_wait_s=0.0,
                                process="h:1" if i < 4 else "h:2"))


def test_dask_history_reads_back_the_time_alone_per_process(tmp_path):
    """Each process's lock was saturated (4 users at 0.25 each = 1.0 >= 0.75) for the whole 2.0 s,
    so each service's time off the lock (2.0 - 0.5 = 1.5 s) was a wait: alone it takes 0.5 s, and
    its demand is 0.5 CPU-s / 0.5 s = 1 core, holding the lock all the time (gil 1)."""
    with History(tmp_path) as h:
        record_dask_warmups(h)
        observed = h.observed()
    assert [o.duration_s for o in observed["w0"]] == pytest.approx([0.5] * 3)
    assert [o.wall_s for o in observed["w0"]] == pytest.approx([2.0] * 3)
    est = estimates(fanout(), observed, "dask")
    assert {e.source for e in est} == {"history"}
    assert [e.seconds for e in est] == pytest.approx([0.5] * 8)
    assert [x for e in est for x in (e.demand.cpu, e.demand.gil)] == pytest.approx([1.0] * 16)


def test_prediction_on_two_processes_of_four_threads_from_recorded_history(tmp_path):
    """From the warm-ups above, 8 services of 0.5 s alone, cpu 1, gil 1.

    * 8 slots, 2 processes x 4 threads, 8 cores: 4 services per process, each process's lock
      wanted 4 times over, the cores 8 / 8 = 1: everything slows by 4: 0.5 x 4 = 2.0 s.
    * the same on 2 cores: the cores are wanted 8 / 2 = 4 times over too: 2.0 s.
    * 2 slots on 2 cores: one service in each process (the emptier one takes the next), neither
      lock shared, 2 cores for 2: four rounds of 0.5 s = 2.0 s. One lock for all (the threads
      runner) would run the two at half speed: 4 rounds of 1.0 s = 4.0 s.
    * 1 slot: 8 x 0.5 = 4.0 s, where the stretched history (2.0 s each) would have said 16 s."""
    with History(tmp_path) as h:
        record_dask_warmups(h)
        observed = h.observed()
    g = fanout()
    est = estimates(g, observed, "dask")
    secs, demand = [e.seconds for e in est], [e.demand for e in est]
    dask8 = Machine(cores=8, gil_procs=(4, 4))
    assert _predict(g, secs, demand, 8, dask8).makespan_s == pytest.approx(2.0)
    assert _predict(g, secs, demand, 8, Machine(cores=2, gil_procs=(4, 4))).makespan_s == pytest.approx(2.0)
    assert _predict(g, secs, demand, 2, Machine(cores=2, gil_procs=(4, 4))).makespan_s == pytest.approx(2.0)
    assert _predict(g, secs, demand, 2, Machine(cores=2, gil_procs=(8,))).makespan_s == pytest.approx(4.0)
    assert _predict(g, secs, demand, 1, Machine(cores=2, gil_procs=(4, 4))).makespan_s == pytest.approx(4.0)


def test_uneven_placement_is_modelled_not_averaged():
    """Three 1 s lock-bound services, 2 processes x 4 threads, 8 cores: two go to one process,
    one to the other. The lone one ends at 1 s, the pair shares its lock and ends at 2 s
    (pooling the demand over both locks, 3 / 2, would have said 1.5 s for all three)."""
    g = fanout(3)
    p = _predict(g, [1.0] * 3, [Demand(1.0, gil=1.0)] * 3, 3, Machine(cores=8, gil_procs=(4, 4)))
    assert p.makespan_s == pytest.approx(2.0)
    assert sorted(p.stretch) == pytest.approx([1.0, 2.0, 2.0])


def test_threads_is_one_lock_as_before(tmp_path):
    """The threads runner, one process: a and b held the lock 0.5 s each over the same 1.1 s and
    read back 0.5 s each (the process is recorded now; before it was not, and both read alike).
    Predicted, 8 lock-bound 0.5 s services on 8 cores and 8 slots share one lock: 8 x 0.5 = 4.0 s."""
    for process in ("h:7", None):
        with History(tmp_path / str(process)) as h:
            for name in "ab":
                h.record(AttemptRow(service=name, run_id="r", runner="threads", attempt=1, outcome="completed",
                                    start=0.0, end=1.1, cpu_s=0.5, gil_s=0.5, process=process))
            obs = h.observed()
        assert [obs[n][0].duration_s for n in "ab"] == pytest.approx([0.5, 0.5], abs=0.03)
    g = fanout()
    p = _predict(g, [WORK_S] * 8, [Demand(1.0, gil=1.0)] * 8, 8, Machine(cores=8, gil_procs=(8,)))
    assert p.makespan_s == pytest.approx(4.0)


def test_where_the_lock_is_shared_and_what_is_recorded(monkeypatch):
    """The machine learns the layout from the runner, or, for a plan made before it starts, from the
    slots it will have. Dask records its thread's CPU as the lock time, and the worker's process."""
    class Cluster:  # what DaskRunner says once it has asked the scheduler: nthreads per worker
        threads_per_process = (4, 4, 1)
        address = "tcp://sched:8786"

    assert shared_locks("dask", Cluster()) == (4, 4, 1)
    assert (local_dask(8, cpus=2), local_dask(3, cpus=2), local_dask(2, cpus=2)) == ((4, 4), (2, 2), (1, 1))
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert shared_locks("dask", None, workers=8) == (4, 4)  # as runners.dask would start it here
    assert shared_locks("dask", None, workers=2) == ()  # one thread per process: a lock each
    assert shared_locks("processes", None, workers=8) == ()
    assert shared_locks("threads", None, workers=8) == (8,)

    class Outcome:
        thread_cpu_s, process_cpu_s = 0.5, 1.7

    assert gil_seconds("dask", Outcome()) == 0.5 and gil_seconds("threads", Outcome()) == 0.5
    assert gil_seconds("processes", Outcome()) is None and gil_seconds("ray", Outcome()) is None
    assert process_of("host:123/Dask-Default-Threads-123-2") == "host:123"
    assert process_of(None) is None


def test_a_lock_saturated_on_a_loaded_machine_is_read_as_saturated():
    """Recorded on Dask with other work on the 2 cores: four islands of 0.2 s of CPU in one process,
    each waiting 0.45 s for a core, all over the same 1.57 s. On a CPU or waiting for one, each used
    0.65 / 1.57 = 0.41 of the lock, 1.66 together: saturated. Alone each takes its 0.2 s of CPU
    (1.57 - 0.45 = 1.12 s of its own time, of which 0.92 s waited for the lock)."""
    from orchestrator.planning.destretch import Span, alone_times

    assert alone_times([Span(0.0, 1.57, 0.2, 0.45)] * 4) == pytest.approx([0.2] * 4)


def test_the_runner_overhead_loses_the_lock_waits_around_it(tmp_path):
    """Threads at 8: w0-w6 start at once and saturate the lock from 0.0 to 3.5 s; w7 was
    dispatched at 0.0 but its thread could start only at 0.3 s (it had to take the lock), and its
    end at 3.5 s was seen at 3.52 s, once the lock was free. The 0.3 s before its start was a wait
    for the lock, not the runner's overhead; the 0.02 s after its end stands. Alone, at
    concurrency 1, no such wait comes back, so the model must not learn it as overhead."""
    with History(tmp_path) as h:
        for i in range(7):
            h.record(AttemptRow(service=f"w{i}", run_id="warm", runner="threads", attempt=1, outcome="completed",
                                start=0.0, end=3.5, dispatched=0.0, finished=3.5, cpu_s=0.5, gil_s=0.5,
                                cpu_wait_s=0.0, process="h:1"))
        h.record(AttemptRow(service="w7", run_id="warm", runner="threads", attempt=1, outcome="completed",
                            start=0.3, end=3.5, dispatched=0.0, finished=3.52, cpu_s=0.5, gil_s=0.5,
                            cpu_wait_s=0.0, process="h:1"))
        observed = h.observed()
    assert observed["w7"][0].overhead_s == pytest.approx(0.02)
    assert observed["w0"][0].overhead_s == pytest.approx(0.0)


def test_the_tail_of_a_fan_out_reads_as_saturated_too():
    """Threads at 8, as recorded (history of `work_fanout`, 2026-12-07): eight services of 0.5 s of
    lock each, started together, ending from 3.16 s to 4.04 s as the lock's share of each grew.
    Averaged over their spans they used about 1/7 of the lock each; in the tail two or three
    shared it, each at a half or a third, yet their averages added up to a quarter, and the tail
    read as free: the last ones read back 0.8-1.0 s alone. Each took 0.5 s alone (measured at
    concurrency 1 the same hour: 0.502-0.509 s)."""
    from orchestrator.planning.destretch import Span, alone_times

    ends = (3.16, 3.17, 3.19, 3.45, 3.78, 3.87, 3.91, 4.04)
    alone = alone_times([Span(0.0, end, 0.5, 0.08) for end in ends])
    assert alone == pytest.approx([0.5] * 8, abs=0.05)
    # a lone service after them, and a sleeper beside them, keep their time
    alone = alone_times([*(Span(0.0, end, 0.5, 0.0) for end in ends), Span(5.0, 5.6, 0.5), Span(0.0, 4.0, 0.01)])
    assert alone[8:] == pytest.approx([0.6, 4.0])


def test_native_time_inside_a_saturated_lock_is_progress_not_waiting():
    """A DuckDB-like service held the lock 0.2 s and computed 0.8 s without it, beside a Python
    service that held it throughout the same 2 s: alone it takes its 0.2 s on the lock and its
    0.8 s of native work, not 0.2 s."""
    from orchestrator.planning.destretch import Span, alone_times

    alone = alone_times([Span(0.0, 2.0, 0.2, 0.0, 0.8), Span(0.0, 2.0, 1.6)])
    assert alone == pytest.approx([1.0, 1.6])
