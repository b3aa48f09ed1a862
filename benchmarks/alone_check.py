"""Where a prediction at concurrency 1 goes wrong: each service's estimate against its time alone (issue 11).

    python -m benchmarks.alone_check [--runner threads] [--warmups 2] [--warm-at 8]

As the prediction measure does it (``benchmarks.prediction``): a fresh history in a temporary
folder, ``--warmups`` refreshes of the bundled refresh at ``--warm-at``, then one at concurrency 1.
For that last one: per service, the estimate the planner took from the warm-ups (``est``), the
time it took alone (``alone``), their ratio, and the CPU demand the model assumed. Then the sums,
and the machine's CPU beside the services': ``background`` is the cores kept busy by everything
else while the refresh ran (critpath's own process where the services do not share it, the
recorder, the Prefect server, other work), per run. The estimates are times alone read back from
stretched runs (``planning.destretch``); this shows how far that reading is from a real run alone.
"""
from __future__ import annotations

import argparse
import tempfile


def main(argv: list[str] | None = None) -> None:
    from orchestrator.execution.engines import started
    from orchestrator.execution.machines import planning_inputs
    from orchestrator.flows.flow import run
    from orchestrator.inputs.cores import busy_reader
    from orchestrator.inputs.history import History

    from .measures import refinery_graph
    from .server import bench_environment

    ap = argparse.ArgumentParser(prog="python -m benchmarks.alone_check", description=__doc__.splitlines()[0])
    ap.add_argument("--runner", default="threads")
    ap.add_argument("--warmups", type=int, default=2)
    ap.add_argument("--warm-at", type=int, default=8)
    args = ap.parse_args(argv)
    graph, why = refinery_graph()
    if graph is None:
        raise SystemExit(why)

    busy = busy_reader()  # the reading the machine model's background load is made of

    def measured(history, c: int) -> tuple[dict, float, float]:
        before = busy()
        report = run(graph, runner, max_concurrency=c, history=history)
        machine = busy() - before
        cpu = sum(o[-1].cpu_s or 0.0 for o in history.observed().values())  # the run just made is each one's last
        return report, machine, cpu

    with bench_environment() as server, started(args.runner, args.warm_at, None) as runner, \
            tempfile.TemporaryDirectory(prefix="critpath-alone-") as folder, History(folder) as history:
        for _ in range(args.warmups):
            server.settle()
            report, machine, cpu = measured(history, args.warm_at)
            print(f"warm-up @{args.warm_at}: makespan {report['makespan_s']:.2f} s, background "
                  f"{(machine - cpu) / report['makespan_s']:.2f} cores", flush=True)
        inputs = planning_inputs(graph, runner.name, runner, history)
        server.settle()
        if hasattr(runner, "warm"):
            runner.warm()
        report, machine, cpu = measured(history, 1)
    print(f"@1: predicted {report.get('predicted_makespan_s') or 0:.2f} s, measured {report['makespan_s']:.2f} s, "
          f"background {(machine - cpu) / report['makespan_s']:.2f} cores")
    print(f"{'service':30s} {'est s':>7s} {'alone s':>8s} {'ratio':>6s} {'cpu demand':>10s} {'lock demand':>11s}")
    total_est = total_alone = 0.0
    for i, name in enumerate(graph.names):
        est = inputs.estimates[i]
        s = report["services"][name]
        alone = s["end"] - s["start"]
        total_est, total_alone = total_est + est.seconds, total_alone + alone
        print(f"{name:30s} {est.seconds:7.2f} {alone:8.2f} {alone / est.seconds if est.seconds else 0:6.2f} "
              f"{est.demand.cpu:10.2f} {est.demand.gil:11.2f}")
    print(f"{'sum':30s} {total_est:7.2f} {total_alone:8.2f} {total_alone / total_est if total_est else 0:6.2f}")


if __name__ == "__main__":
    main()
