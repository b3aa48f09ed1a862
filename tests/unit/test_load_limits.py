"""Reliability, limits under load: 10,000 services of 0-1 ms in 8 pools (limits 1-3),
max_concurrency 8, on the threads runner and the dispatcher alone (no Prefect, no cluster).

The intervals recorded on the workers never exceed a limit, every service runs once, and the
dispatcher never waits while a ready service has a free slot (replayed from its event log).
Its reaction time is printed, never asserted.
"""
from __future__ import annotations

import random
import statistics
from dataclasses import asdict

from orchestrator.execution.dispatcher import Dispatcher
from orchestrator.planning.graph import Graph
from orchestrator.planning.planner import make_plan
from runners.threads import ThreadRunner
from tests.helpers.graphs import synth
from tests.helpers.schedule import attempt_intervals, max_overlap, replay_problems

LOAD_SERVICES = 10_000
LOAD_CONCURRENCY = 8
LOAD_POOLS = {f"pool_{i}": 1 + i % 3 for i in range(8)}  # limits 1, 2, 3, 1, 2, 3, 1, 2


def load_graph(seed: int = 5) -> Graph:
    """10,000 services of 0 or 1 ms, each in one of 8 pools, most after 0-2 recent others."""
    rng = random.Random(seed)
    services = []
    for i in range(LOAD_SERVICES):
        ups = rng.sample(range(max(0, i - 200), i), min(i, rng.choice([0, 0, 1, 2])))
        services.append(synth(f"s{i:05d}", rng.choice([0.0, 0.001]), [f"s{j:05d}" for j in ups],
                               pool=rng.choice(sorted(LOAD_POOLS))))
    return Graph(services, LOAD_POOLS)


def _reaction_ms(events) -> list[float]:
    """Each completion (as the dispatcher handled it) to the next dispatch, in ms."""
    out, pending = [], None
    for t, kind, _ in events:
        if kind == "complete" and pending is None:
            pending = t
        elif kind == "dispatch" and pending is not None:
            out.append((t - pending) * 1000)
            pending = None
    return out


def test_limits_hold_and_no_slot_idles_under_10000_services():
    graph = load_graph()
    with ThreadRunner(workers=LOAD_CONCURRENCY) as runner:
        dispatcher = Dispatcher(make_plan(graph, LOAD_CONCURRENCY), runner)
        runs = dispatcher.run()
    report = {"services": {n: {"attempt_history": [asdict(a) for a in r.history]} for n, r in runs.items()}}
    assert {(r.state, r.attempts) for r in runs.values()} == {("completed", 1)}
    assert max_overlap(attempt_intervals(report)) <= LOAD_CONCURRENCY
    for pool, limit in LOAD_POOLS.items():
        members = [n for n in graph.names if graph.services[n].pool == pool]
        assert max_overlap(attempt_intervals(report, members)) <= limit, pool
    assert replay_problems(dispatcher.events, graph, LOAD_CONCURRENCY) == []
    ms = _reaction_ms(dispatcher.events)
    q = statistics.quantiles(ms, n=100)
    print(f"\ndispatcher reaction, completion -> next dispatch ({len(ms)} samples): "
          f"p50 {q[49]:.3f} ms, p90 {q[89]:.3f} ms, p99 {q[98]:.3f} ms, max {max(ms):.3f} ms")
