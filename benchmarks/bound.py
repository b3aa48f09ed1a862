"""Makespan / lower bound on the issue's two graphs, on every runner.

    python -m benchmarks.bound [--runners threads,processes,dask,ray] [--repeat 3]

Each runner is started once and reused for every graph; every run is a real
Prefect flow run (Prefect's temporary server unless PREFECT_API_URL is set).
The level-by-level executor is measured in the same run for comparison.
"""
from __future__ import annotations

import argparse
import statistics

from benchmarks.graphs import ISSUE_GRAPHS
from benchmarks.levels import run_levels
from orchestrator.flows.flow import run
from orchestrator.planning.planner import make_plan

SLOTS = 2


def measure(runners: list[str], repeat: int = 3) -> list[dict]:
    from runners import make_runner

    rows = []
    for gname, build in ISSUE_GRAPHS.items():
        graph = build()
        plan = make_plan(graph, SLOTS)
        spans = [run_levels(graph, SLOTS) for _ in range(repeat)]
        rows.append({"graph": gname, "runner": "level-by-level (threads)", "bound_s": plan.lower_bound_s,
                     "simulated_s": plan.simulated_makespan_s, "makespan_s": statistics.median(spans)})
    for rname in runners:
        with make_runner(rname, SLOTS) as runner:
            for gname, build in ISSUE_GRAPHS.items():
                graph = build()
                plan = make_plan(graph, SLOTS)
                spans = [run(graph, runner, max_concurrency=SLOTS)["makespan_s"] for _ in range(repeat)]
                rows.append({"graph": gname, "runner": f"critpath {rname}", "bound_s": plan.lower_bound_s,
                             "simulated_s": plan.simulated_makespan_s, "makespan_s": statistics.median(spans)})
    for r in rows:
        r["ratio"] = r["makespan_s"] / r["bound_s"]
    return rows


def table(rows: list[dict]) -> str:
    head = "| graph | runner | lower bound s | simulated s | makespan s | makespan / bound |\n|---|---|---:|---:|---:|---:|"
    body = [f"| {r['graph']} | {r['runner']} | {r['bound_s']:.2f} | {r['simulated_s']:.2f} | "
            f"{r['makespan_s']:.2f} | {r['ratio']:.3f} |" for r in rows]
    return "\n".join([head, *body])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runners", default="threads,processes,dask,ray")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    rows = measure(args.runners.split(","), args.repeat)
    print(table(rows))


if __name__ == "__main__":
    main()
