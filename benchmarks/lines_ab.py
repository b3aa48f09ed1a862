"""A/B of the lookahead's longest line behind a busy slot, and of its guard (issue 15).

    python -m benchmarks.lines_ab [--runner dask] [--case montage-chameleon-dss-075d-001@2]
                                  [--lines 4,16] [--rounds 2] [--runs 3]

Each variant (the most services queued behind one running service: ``lookahead.MAX_AHEAD``
and the runners' ``slotbook.MAX_QUEUED``; 1 is the lookahead of one; a trailing ``s``, as in
``16s``, keeps the guard strict, as before session 8: nothing at all goes ahead of a more
critical service about to be ready, not even work that ends within a round trip) runs in a process of its
own, on the bench's pieces (its Prefect server, ``Engine``, a runner started and warmed), and the
variants alternate, ``rounds`` times: a slow stretch of the machine then falls on both. One line
per process: achieved / simulated of each of its ``runs`` refreshes, and the slot-seconds the
slots stood idle in the last quarter-seconds of the first run (where montage-dss's ~150 services
of 0-1.5 ms each run).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time


def idle_by_quarter(services: dict, slots: int) -> dict[float, float]:
    """Slot-seconds no service ran, per quarter-second from the first start (worker clocks)."""
    events = sorted([(v["start"], 1) for v in services.values()] + [(v["end"], -1) for v in services.values()])
    t0, running, prev, out = events[0][0], 0, events[0][0], {}
    for t, step in events:
        a = prev
        while running < slots and a < t:
            k = int((a - t0) / 0.25)
            b = min(t, t0 + (k + 1) * 0.25)
            out[k * 0.25] = out.get(k * 0.25, 0.0) + (slots - running) * (b - a)
            a = b
        running, prev = running + step, t
    return out


def one(runner: str, case_key: str, variant: str, runs: int) -> None:
    """Child: ``runs`` refreshes of the case with lines of at most ``lines``; one line of output."""
    import orchestrator.execution.lookahead as lookahead
    import runners.ray as ray_runner
    import runners.slotbook as slotbook
    from orchestrator.execution.engines import started
    from orchestrator.planning.policy import ReadyQueue

    from .measures import Engine, Settings, efficiency_cases
    from .server import bench_environment

    lines, strict = int(variant.rstrip("s")), variant.endswith("s")
    lookahead.MAX_AHEAD = slotbook.MAX_QUEUED = ray_runner.MAX_QUEUED = lines
    if strict:
        bending = ReadyQueue.reserve_after
        ReadyQueue.reserve_after = lambda self, i, guard=None, harmless=None: bending(self, i, guard)
    name, _, c = case_key.rpartition("@")
    case = efficiency_cases(Settings(cases=[(name, int(c))]))[0]
    ratios, tail = [], {}
    with bench_environment() as server, started(runner, Settings().slots, None) as r:
        engine = Engine(r, server)
        try:
            engine.warm_up()
            for k in range(runs):
                rep = engine.run(case.graph, case.concurrency)
                ratios.append(rep["makespan_s"] / rep["simulated_makespan_s"])
                if k == 0:
                    idle = idle_by_quarter(rep["services"], case.concurrency)
                    tail = {t: s for t, s in idle.items() if s >= 0.005}
        finally:
            engine.close()
    print(f"{runner} lines {variant:>3s}: achieved / simulated {' '.join(f'{x:.3f}' for x in ratios)} "
          f"(median {statistics.median(ratios):.3f}); idle slot-ms by quarter-second (first run) "
          + " ".join(f"{t:.2f}s:{s * 1000:.0f}" for t, s in sorted(tail.items())), flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.lines_ab", description=__doc__.splitlines()[0])
    ap.add_argument("--runner", default="dask")
    ap.add_argument("--case", default="montage-chameleon-dss-075d-001@2")
    ap.add_argument("--lines", default="4,16")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child is not None:
        one(args.runner, args.case, args.child, args.runs)
        return
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.1f}; "
          f"{args.case} on {args.runner}", flush=True)
    for _ in range(args.rounds):
        for lines in args.lines.split(","):
            subprocess.run([sys.executable, "-m", "benchmarks.lines_ab", "--runner", args.runner, "--case", args.case,
                            "--runs", str(args.runs), "--child", lines], check=True,
                           stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
