"""A/B of the Ray slot actor's second thread on a chain's per-hop cost (issue 15).

    python -m benchmarks.ray_threads_ab [--pairs 4] [--rounds 6] [--hops 50]

The lookahead gives each Ray slot's actor two threads (a job sent behind the running one waits in
``run`` on the second). On a no-op chain at 2 slots nothing is ever sent behind, so the actor can
be built with one thread there, as it was before the lookahead; this compares the two builds on
critpath's cost per hop (the report's makespan / hops, on the bench's own Prefect server and
``Engine``). Each build runs in a process of its own (a fresh local Ray), ``--pairs`` times,
alternating, ``--rounds`` refreshes each: one line per process, the median of its rounds.
The one-thread build exists only here (it wraps ``ray.remote``): without its second thread a
queued job would hold the actor's only thread while it waits for the one ahead of it.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time


def _one_build(build: str, rounds: int, hops: int) -> None:
    import ray

    remote = ray.remote

    def one_thread(*args, **kwargs):  # the slot actor as it was before the lookahead
        if "concurrency_groups" in kwargs:
            kwargs.pop("concurrency_groups")
            kwargs["max_concurrency"] = 1
        return remote(*args, **kwargs)

    if build == "one":
        ray.remote = one_thread
    from orchestrator.execution.engines import started

    from .measures import Engine, noop_chain
    from .server import bench_environment

    with bench_environment() as server, started("ray", 2, None) as runner:
        engine = Engine(runner, server)
        engine.run(noop_chain(3), 2)  # untimed: first imports on the slots
        graph = noop_chain(hops)
        per_hop = [engine.run(graph, 2)["makespan_s"] / hops * 1000 for _ in range(rounds)]
    print(f"{build:>3} threads: median {statistics.median(per_hop):.2f} ms/hop; rounds "
          + " ".join(f"{x:.2f}" for x in per_hop), flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.ray_threads_ab", description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--hops", type=int, default=50)
    ap.add_argument("--build", choices=("one", "two"), help=argparse.SUPPRESS)  # a child process's build
    args = ap.parse_args(argv)
    if args.build:
        _one_build(args.build, args.rounds, args.hops)
        return
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.1f}; "
          f"{args.hops}-service no-op chain at 2 slots on Ray", flush=True)
    for pair in range(args.pairs):
        for build in (("one", "two") if pair % 2 == 0 else ("two", "one")):
            subprocess.run([sys.executable, "-m", "benchmarks.ray_threads_ab", "--build", build,
                            "--rounds", str(args.rounds), "--hops", str(args.hops)], check=True)


if __name__ == "__main__":
    main()
