"""Planner scale: build, validate and plan N services (3 edges each on average).

Each size runs in a fresh subprocess, twice: once for the times (no tracing),
once under ``tracemalloc`` for the peak of memory allocated by build + validate
+ plan. The process's peak RSS (``resource.getrusage``) is reported too. The
service records are generated before any clock starts: what is measured is what
``critpath plan`` does with a loaded graph.

    python -m benchmarks.planner_scale 100000        # one JSON line

The raw-engine column is the floor any planner pays: ``graphlib`` ordering the
same edges (``TopologicalSorter.static_order``). Prefect has no planner: n/a.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time


def measure(n: int, trace_memory: bool = False) -> dict:
    import gc
    import graphlib
    import resource
    import tracemalloc

    from benchmarks.graphs import planner_graph
    from orchestrator.planning.graph import Graph
    from orchestrator.planning.planner import make_plan
    from orchestrator.planning.validate import validate

    services = planner_graph(n)
    gc.collect()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if trace_memory:
        tracemalloc.start()
    t0 = time.perf_counter()
    graph = Graph(services)
    t1 = time.perf_counter()
    validate(graph)
    t2 = time.perf_counter()
    plan = make_plan(graph, 8)
    t3 = time.perf_counter()
    out = {"services": n, "edges": sum(len(p) for p in graph.preds), "build_s": t1 - t0, "validate_s": t2 - t1,
           "plan_s": t3 - t2, "critical_path_s": plan.critical_path_s,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "rss_before_mb": rss0 / 1024}
    if trace_memory:
        out["traced_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    else:
        deps = {i: graph.preds[i] for i in range(len(graph))}
        t4 = time.perf_counter()
        list(graphlib.TopologicalSorter(deps).static_order())
        out["graphlib_s"] = time.perf_counter() - t4
    return out


def in_subprocess(n: int, memory: bool = True) -> dict:
    """Times from one fresh process, memory from another (tracing slows everything)."""
    row = {"traced_peak_mb": None}
    for flag in ("", "--memory") if memory else ("",):
        cmd = [sys.executable, "-m", "benchmarks.planner_scale", str(n)] + ([flag] if flag else [])
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
        got = json.loads(done.stdout.strip().splitlines()[-1])
        row.update(got if not flag else {"traced_peak_mb": got["traced_peak_mb"]})
    row["validate_and_plan_s"] = row["validate_s"] + row["plan_s"]
    row["total_s"] = row["build_s"] + row["validate_and_plan_s"]
    return row


class Planner:
    """The planner measure, with the same verbs as the others (no baselines to interleave)."""

    def __init__(self, n: int, memory: bool = True):
        self.n = n
        self.memory = memory
        self.rows: list[dict] = []

    def baseline_round(self) -> None:
        pass

    def critpath_round(self) -> dict:
        self.rows.append(in_subprocess(self.n, self.memory))
        return self.rows[-1]

    def row(self) -> dict:
        best = min(self.rows, key=lambda r: r["total_s"])
        return {"measure": "planner", "runner": "-", **best, "repeats": len(self.rows),
                "native": None, "raw": "graphlib static_order",
                "target_s": 3.0 if self.n >= 100_000 else None,
                "target_met": best["validate_and_plan_s"] < 3.0 if self.n >= 100_000 else None,
                "failed": 0}


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]), trace_memory="--memory" in sys.argv[2:])))
