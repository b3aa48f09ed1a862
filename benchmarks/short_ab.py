"""A/B of the bookkeeping process's Running-state hold on the short cases (issue 15).

    python -m benchmarks.short_ab [--runners dask,ray] [--rounds 3] [--hops 300]

On the bench's own pieces (its Prefect server, ``Engine``), per runner: a long no-op chain at
2 slots (the report's makespan / hops: critpath's cost per hop inside a run), then the four
short efficiency cases (seismology and montage-dss at 2 and 4 slots), in interleaved rounds of
each variant: ``batch`` (a Running state folds into its final state's event only when both were
read together, ``HOLD_S = 0``) and ``hold`` (``HOLD_S`` as shipped). One line per round:
achieved / simulated per case, the CPU seconds the Prefect server used, the load average.
"""
from __future__ import annotations

import argparse
import os
import time

CASES = (("seismology-chameleon-200p-001", 2), ("seismology-chameleon-200p-001", 4),
         ("montage-chameleon-dss-075d-001", 2), ("montage-chameleon-dss-075d-001", 4))


def main(argv: list[str] | None = None) -> None:
    from orchestrator.execution.engines import started
    from orchestrator.flows import recorder_process

    from .measures import Engine, Settings, efficiency_cases, noop_chain
    from .server import bench_environment

    ap = argparse.ArgumentParser(prog="python -m benchmarks.short_ab", description=__doc__.splitlines()[0])
    ap.add_argument("--runners", default="dask,ray")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--hops", type=int, default=300)
    args = ap.parse_args(argv)
    shipped = recorder_process.HOLD_S
    variants = {"batch": 0.0, "hold": shipped}
    cases = efficiency_cases(Settings(cases=CASES))
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.1f}; "
          f"cases: {', '.join(f'{n}@{c}' for n, c in CASES)}", flush=True)
    with bench_environment() as server:
        for name in args.runners.split(","):
            with started(name, 8, None) as runner:
                engine = Engine(runner, server)
                engine.run(cases[0].graph, 2)  # untimed: imports, first flow run, workers
                chain = engine.run(noop_chain(args.hops), 2)
                print(f"{name:8} chain of {args.hops}: {chain['makespan_s'] / args.hops * 1000:.2f} ms/hop "
                      "inside the run", flush=True)
                for _ in range(args.rounds):
                    for variant, hold in variants.items():
                        recorder_process.HOLD_S = hold
                        cpu = server.cpu_seconds()
                        ratios = [engine.run(c.graph, c.concurrency)["makespan_s"] / c.plan.simulated_makespan_s
                                  for c in cases]
                        print(f"{name:8} {variant:6} " + " ".join(f"{x:.3f}" for x in ratios)
                              + f"  server_cpu_s={server.cpu_seconds() - cpu:.1f} load={os.getloadavg()[0]:.1f}",
                              flush=True)
                recorder_process.HOLD_S = shipped


if __name__ == "__main__":
    main()
