"""The dispatcher alone, without Prefect, on the short efficiency cases: how much of the gap
to the simulated makespan is the engine and the dispatcher, and how much the Prefect
bookkeeping that shares their process (issue 15).

    python -m benchmarks.bare_dispatch threads dask ray

Prints, per runner and round, achieved / simulated on seismology @ 2, @ 4 and montage-dss
@ 2, @ 4 (the bench's efficiency cases of the same names: sleeping services, scaled to a
3 s bound). ``critpath bench --only efficiency --cases ...`` runs the same cases with the
bookkeeping on.
"""
from __future__ import annotations

import sys
import time

CASES = (("seismology-chameleon-200p-001", 2), ("seismology-chameleon-200p-001", 4),
         ("montage-chameleon-dss-075d-001", 2), ("montage-chameleon-dss-075d-001", 4))


def main(runners: list[str], rounds: int = 2) -> None:
    from orchestrator.execution.dispatcher import Dispatcher
    from orchestrator.execution.engines import started

    from .measures import Settings, efficiency_cases

    cases = efficiency_cases(Settings(cases=CASES))
    print("cases: " + ", ".join(f"{c.name} @ {c.concurrency}" for c in cases))
    for name in runners:
        with started(name, 8, None) as runner:
            for _ in range(rounds):
                ratios = []
                for c in cases:
                    t0 = time.perf_counter()
                    Dispatcher(c.plan, runner, [], max_concurrency=c.concurrency).run()
                    ratios.append((time.perf_counter() - t0) / c.plan.simulated_makespan_s)
                print(f"{name:10} " + "  ".join(f"{r:.3f}" for r in ratios), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["threads", "dask", "ray"])
