"""A model of the machine a refresh runs on, and the prediction it makes.

The planner's simulation (``planner.simulate``) replays the dispatcher's policy with
every service taking its estimate: it counts slots. A real machine has cores. When
the services running at once want more CPU than it has, each of them stretches, and
the refresh takes longer than any slot count says. This module predicts that.

Model (processor sharing):
  * ``Machine.cores``: the CPUs the runner can use; ``gil_procs``: the worker processes
    that run several services at once, as threads, each with its threads: the services
    in one such process share its interpreter lock, a resource of capacity 1 per
    process. The threads runner is one of them (all its services share the CLI's lock);
    a Dask cluster is one per worker process (a local cluster of 8 slots on 2 CPUs: two
    processes of 4 threads); processes and Ray give every service a process, and lock,
    of its own: none. ``overhead_s``: the runner's own time per service (dispatch to
    worker start plus worker end to completion seen), measured in history.
  * per service, ``Demand.cpu``: the cores it keeps busy while it runs alone (CPU
    seconds / wall seconds, from history; 1 for ``kind: cpu``, 0 for a sleep), and
    ``Demand.gil``: the share of its wall time it holds its process's lock.
  * placement: which process a service runs in is the runner's choice, made as it
    starts. The model puts it in the process running the fewest services for its
    threads (lowest index on a tie), as the Dask runner picks a slot (``runners/
    dask_slots.py``: an idle one on the worker running the fewest jobs) and as Dask's
    scheduler spreads tasks. Simulating the placement, rather than pooling every
    service's lock demand over all the locks, keeps the unevenness that really happens:
    three services on two processes are a pair sharing a lock and one alone, not three
    at 1.5 x. Where a runner places otherwise, the model is optimistic.
  * ``Machine.background``: the cores everything else keeps busy while a run runs here
    (critpath's own bookkeeping, the Prefect server, a local cluster's scheduler, other
    work), measured per run in history (machine busy time less the services' CPU time).
    On 2 cores that is 0.1-0.3 of them: services saturating the cores get the rest.
  * a service alone takes ``est + overhead``. With others running, the part of its time
    it spends on a CPU (``min(1, cpu)`` of it) slows by ``max(1, total cpu / free cores)``,
    or, for a service holding a lock, by its process's ``max(1, total gil)`` there when
    that is worse: across processes the services share only the cores. The rest
    (waiting on I/O, sleeping, the runner's overhead) does not slow.

The prediction is an event-driven simulation of the dispatcher's own policy
(``policy.ReadyQueue``, cpu-aware or not) under that model: between two events every
running service progresses at its current rate; the next event is the earliest
finish. O(events x running) time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from .graph import Graph
from .policy import ReadyQueue

_EPS = 1e-9


@dataclass(frozen=True)
class Machine:
    cores: float
    #: the threads of each worker process whose services share its interpreter lock; () where every
    #: service has a process of its own. Threads runner: (slots,); local Dask, 8 slots on 2 CPUs: (4, 4)
    gil_procs: tuple[int, ...] = ()
    overhead_s: float = 0.0  # the runner's own time per service, off the CPU
    #: where ``cores`` came from, for people: "os.sched_getaffinity", "cgroup cpu.max", "dask scheduler", ...
    source: str = ""
    #: cores kept busy by everything but the services while a run ran here (see ``free_cores``)
    background: float = 0.0


def free_cores(machine: Machine, running: int) -> float:
    """The cores left to ``running`` services: ``cores`` less the background load history measured
    (critpath's bookkeeping, the Prefect server, the engine's scheduler, other work). The kernel's
    fair scheduler gives a background that wants more no more than one runnable's share, as if it
    were one more service: hence the floor."""
    return max(machine.cores - machine.background, machine.cores / (running + 1))


@dataclass(frozen=True)
class Demand:
    cpu: float = 1.0  # cores kept busy while running alone
    gil: float = 0.0  # share of wall time holding its process's interpreter lock (see ``Machine.gil_procs``)


@dataclass(frozen=True)
class Prediction:
    makespan_s: float
    start_s: list[float] = field(default_factory=list)
    finish_s: list[float] = field(default_factory=list)
    #: (finish / (est + overhead)) per service: 1.0 ran as if alone, 2.0 took twice as long
    stretch: list[float] = field(default_factory=list)


def rates(running: Sequence[int], demand: Sequence[Demand], machine: Machine,
          cpu_share: Sequence[float], where: Mapping[int, int] | None = None) -> dict[int, float]:
    """Progress per second of wall time of each running service (1.0 = as fast as alone).

    ``cpu_share[i]`` is the fraction of service i's alone time spent on a CPU; ``where[i]`` the
    index in ``machine.gil_procs`` of the process it runs in (default: the first)."""
    where = where or {}
    total_cpu = sum(demand[i].cpu for i in running)
    slow_cpu = max(1.0, total_cpu / free_cores(machine, len(running))) if machine.cores > 0 else 1.0
    held: dict[int, float] = {}  # per process: the lock demand of the services running in it
    if machine.gil_procs:
        for i in running:
            held[where.get(i, 0)] = held.get(where.get(i, 0), 0.0) + demand[i].gil
    out = {}
    for i in running:
        slow = slow_cpu
        if machine.gil_procs and demand[i].gil > 0:
            slow = max(slow, held[where.get(i, 0)])
        f = cpu_share[i]
        out[i] = 1.0 / ((1.0 - f) + f * slow)
    return out


def place(where: Mapping[int, int], machine: Machine) -> int:
    """The process a service starting now runs in: the one running the fewest services for its
    threads, the lowest index on a tie (see the module docstring: Dask's aim, not its promise)."""
    if len(machine.gil_procs) < 2:
        return 0
    count = [0] * len(machine.gil_procs)
    for p in where.values():
        count[p] += 1
    return min(range(len(count)), key=lambda p: (count[p] / max(1, machine.gil_procs[p]), p))


def predict(graph: Graph, est: Sequence[float], demand: Sequence[Demand], rank: Sequence[float],
            max_concurrency: int, machine: Machine, cpu_aware: bool = False,
            started: Mapping[int, float] | None = None) -> Prediction:
    """Makespan, starts and finishes of the dispatcher's policy on ``machine``.

    ``started``: services already running at time 0 (sources of ``graph``: a run's remaining
    subgraph), each with the alone-seconds of work it has left; they hold their slots from
    the start, whatever the limits, and the others are admitted around them."""
    n = len(est)
    alone = [est[i] + machine.overhead_s for i in range(n)]
    # the CPU-bound part of a service's alone time; the runner's overhead is never on its cores
    cpu_share = [min(1.0, max(0.0, demand[i].cpu)) * (est[i] / alone[i] if alone[i] > 0 else 0.0)
                 for i in range(n)]
    q = ReadyQueue(graph, rank, max_concurrency,
                   cpu=[d.cpu for d in demand] if cpu_aware else None, cores=machine.cores if cpu_aware else None)
    start, finish = [0.0] * n, [0.0] * n
    remaining: dict[int, float] = {}  # running service -> alone-seconds of work left
    where: dict[int, int] = {}  # running service -> its process (``Machine.gil_procs``)
    for i in sorted(started or ()):
        q.admit(i)
        remaining[i] = max(0.0, started[i])
        where[i] = place(where, machine)
    now = 0.0
    while True:
        for i in q.pop_startable():
            start[i] = now
            remaining[i] = alone[i]
            where[i] = place(where, machine)
        if not remaining:
            break
        rate = rates(list(remaining), demand, machine, cpu_share, where)
        step = min(remaining[i] / rate[i] for i in remaining)
        now += step
        done = []
        for i in list(remaining):
            remaining[i] -= rate[i] * step
            if remaining[i] <= _EPS * max(1.0, alone[i]):
                done.append(i)
        # every completion at this instant is seen before the next dispatch, as the dispatcher does
        for i in sorted(done):
            del remaining[i]
            del where[i]
            finish[i] = now
            q.release(i)
            q.completed(i)
    stretch = [(finish[i] - start[i]) / alone[i] if alone[i] > 0 else 1.0 for i in range(n)]
    return Prediction(now, start, finish, stretch)
