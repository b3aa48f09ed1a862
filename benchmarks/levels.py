"""A level-by-level executor: the baseline critpath is measured against.

Runs every service of depth d (longest path from a source), waits for all of them,
then moves on: what a hand-rolled "stage" orchestrator does. Same worker body and
thread pool as critpath's threads runner, so the difference is the policy.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor, wait

from orchestrator.planning.graph import Graph
from runners.base import Job, execute


def levels(graph: Graph) -> list[list[int]]:
    depth = [0] * len(graph)
    for i in graph.topo_order():
        for j in graph.succs[i]:
            depth[j] = max(depth[j], depth[i] + 1)
    out: list[list[int]] = [[] for _ in range(max(depth, default=-1) + 1)]
    for i, d in enumerate(depth):
        out[d].append(i)
    return out


def run_levels(graph: Graph, max_concurrency: int) -> float:
    """Makespan in seconds."""
    with ThreadPoolExecutor(max_concurrency) as pool:
        t0 = time.time()
        for level in levels(graph):
            jobs = []
            for i in level:
                s = graph.services[graph.names[i]]
                jobs.append(pool.submit(execute, Job(s.name, s.name, s.call, dict(s.params), s.duration, s.kind)))
            wait(jobs)
        return time.time() - t0
