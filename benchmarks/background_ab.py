"""The machine model with and without the background load, on the same runs (issue 11).

    python -m benchmarks.background_ab [--runner processes] [--graph fanout|pole|bundled]
                                       [--limits 8,8,1,2,4,8,2,4]

One fresh history in a temporary folder; one refresh per limit in ``--limits``, in order. Before
each, the planner predicts it twice from the history so far: as ``critpath run`` does (with the
background load the earlier runs measured, ``planning.machine.free_cores``) and with the
background set to 0 (the model before it). After each, the background this run measured: the busy
CPU seconds of the CPUs critpath may use from its first dispatch to its last end, less its
services' CPU seconds, over that time. Errors are measured / predicted - 1.
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile


def main(argv: list[str] | None = None) -> None:
    from orchestrator.execution.engines import started
    from orchestrator.execution.machines import planning_inputs
    from orchestrator.flows.flow import run
    from orchestrator.inputs.history import History
    from orchestrator.planning.planner import make_plan

    from .measures import refinery_graph
    from .prediction import work_fanout, work_pole_and_islands
    from .server import bench_environment

    ap = argparse.ArgumentParser(prog="python -m benchmarks.background_ab", description=__doc__.splitlines()[0])
    ap.add_argument("--runner", default="processes")
    ap.add_argument("--graph", choices=("fanout", "pole", "bundled"), default="fanout")
    ap.add_argument("--limits", default="8,8,1,2,4,8,2,4")
    args = ap.parse_args(argv)
    graph = {"fanout": work_fanout, "pole": work_pole_and_islands, "bundled": lambda: refinery_graph()[0]}[args.graph]()
    if graph is None:
        raise SystemExit("the bundled refresh is not available here")
    limits = [int(x) for x in args.limits.split(",")]
    with bench_environment() as server, started(args.runner, max(limits), None) as runner, \
            tempfile.TemporaryDirectory(prefix="critpath-background-") as folder, History(folder) as history:
        for c in limits:
            server.settle()
            if hasattr(runner, "warm"):
                runner.warm()
            inputs = planning_inputs(graph, runner.name, runner, history)
            bare = dataclasses.replace(inputs.machine, background=0.0)
            without = make_plan(graph, c, estimates=inputs.estimates, machine=bare).predicted_makespan_s
            report = run(graph, runner, max_concurrency=c, history=history)
            measured, predicted = report["makespan_s"], report.get("predicted_makespan_s")
            loads = history.background(runner.name)
            print(f"{args.runner} {args.graph} @{c}: measured {measured:.2f} s; predicted {predicted:.2f} s "
                  f"({measured / predicted - 1:+.1%}) with background {inputs.machine.background:.2f} cores, "
                  f"{without:.2f} s ({measured / without - 1:+.1%}) without; this run's background "
                  f"{loads[-1] if loads else float('nan'):.2f} cores", flush=True)


if __name__ == "__main__":
    main()
