"""Graphs the benchmarks run (plain data; no engine imported).

Families for critical-path efficiency, each a builder ``f(scale=1.0) -> Graph``
of synthetic (sleeping) services, deterministic (seeded where random):

  chain               20 services in a line
  fan-out/fan-in      a source, 32 workers of mixed length, a sink
  diamond lattice     a 6 x 6 grid, each cell after its left and upper neighbours
  random layered      8 layers of 8, each service after 1-3 of the layer above (seed 7)
  alternating chains  two chains of 1.0/0.1 s steps in opposite phase
  chain + shorts      a chain of 6 x 0.5 s and 12 independent 0.25 s services
  pool-constrained    8 extract -> transform -> load pipelines, extracts in pool
                      ``api`` (limit 2) and loads in pool ``db`` (limit 1), then a report

Plus the shapes of the other measures: ``noop_chain`` (per-hop overhead),
``noop_fanout`` (throughput), ``planner_graph`` (planner scale), and
``trace_cases`` (every WfCommons trace in ../shared/traces).

``scaled_to`` rescales a graph so that its lower bound at a given concurrency
is a target number of seconds (3 s in the efficiency measure).
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Callable

from orchestrator.planning.graph import Graph
from orchestrator.planning.model import Service
from orchestrator.planning.planner import make_plan

TRACES = Path(__file__).resolve().parent.parent.parent / "shared" / "traces"
#: the trace the quick set uses, kept in the repository: a clone without ../shared still benches
OWN_TRACES = Path(__file__).resolve().parent / "traces"


def _chain(prefix: str, durations, first_after=()):
    out = []
    for i, d in enumerate(durations):
        after = (f"{prefix}{i - 1}",) if i else tuple(first_after)
        out.append(Service(f"{prefix}{i}", after=after, duration=d))
    return out


def _rng_durations(rng: random.Random, n: int, low: float = 0.1, high: float = 1.0) -> list[float]:
    """Skewed like real services: most are short, a few long (log-uniform)."""
    return [round(low * (high / low) ** rng.random(), 3) for _ in range(n)]


# -- efficiency families ------------------------------------------------------------
def chain(scale: float = 1.0) -> Graph:
    """s0 -> s1 -> ... -> s19, 0.15 s each: the critical path is everything."""
    return Graph(_chain("s", [0.15 * scale] * 20))


def fan_out_fan_in(scale: float = 1.0) -> Graph:
    """src -> w00..w31 (0.1-1.0 s, seed 3) -> sink."""
    rng = random.Random(3)
    workers = [Service(f"w{i:02d}", after=("src",), duration=d * scale)
               for i, d in enumerate(_rng_durations(rng, 32))]
    return Graph([Service("src", duration=0.2 * scale), *workers,
                  Service("sink", after=tuple(w.name for w in workers), duration=0.2 * scale)])


def diamond_lattice(scale: float = 1.0, n: int = 6) -> Graph:
    """Cell (r, c) runs after (r-1, c) and (r, c-1); 0.1-1.0 s (seed 5). The longest
    path crosses 2n-1 cells; the anti-diagonals are the wavefront."""
    rng = random.Random(5)
    out = []
    for r in range(n):
        for c in range(n):
            after = tuple(f"d{a}_{b}" for a, b in ((r - 1, c), (r, c - 1)) if a >= 0 and b >= 0)
            out.append(Service(f"d{r}_{c}", after=after, duration=_rng_durations(rng, 1)[0] * scale))
    return Graph(out)


def random_layered(scale: float = 1.0, layers: int = 8, width: int = 8, seed: int = 7) -> Graph:
    """Each service of layer k > 0 runs after 1-3 services of layer k-1 (seeded)."""
    rng = random.Random(seed)
    out = []
    for k in range(layers):
        for j in range(width):
            after = () if k == 0 else tuple(sorted(
                f"r{k - 1}_{p}" for p in rng.sample(range(width), rng.randint(1, 3))))
            out.append(Service(f"r{k}_{j}", after=after, duration=_rng_durations(rng, 1)[0] * scale))
    return Graph(out)


def alternating_chains(scale: float = 1.0) -> Graph:
    """Two 4-service chains, 1.0/0.1 s alternating in opposite phase (run at 2 slots).

    A level-by-level executor waits for the slowest service of every level:
    4 x 1.0 s = 4.0 s against a critical path of 2.2 s (1.8x).
    """
    return Graph(_chain("a", [1.0 * scale, 0.1 * scale] * 2) + _chain("b", [0.1 * scale, 1.0 * scale] * 2))


def chain_and_shorts(scale: float = 1.0) -> Graph:
    """A chain of 6 x 0.5 s plus 12 independent 0.25 s services (run at 2 slots)."""
    return Graph(_chain("chain_", [0.5 * scale] * 6)
                 + [Service(f"short_{i:02d}", duration=0.25 * scale) for i in range(12)])


def pool_constrained(scale: float = 1.0) -> Graph:
    """Eight pipelines ``extract_i (api) -> transform_i -> load_i (db)`` and a ``report``
    after every load; pools api=2, db=1. Both pools bind, whatever the concurrency:
    api work / 2 = 3.1 s and db work / 1 = 3.2 s, while the critical path is 2.0 s."""
    rng = random.Random(11)
    out = []
    for i in range(8):
        out.append(Service(f"extract_{i}", pool="api", duration=round(rng.uniform(0.6, 1.0), 2) * scale))
        out.append(Service(f"transform_{i}", after=(f"extract_{i}",), duration=round(rng.uniform(0.2, 0.8), 2) * scale))
        out.append(Service(f"load_{i}", after=(f"transform_{i}",), pool="db", duration=0.4 * scale))
    out.append(Service("report", after=tuple(f"load_{i}" for i in range(8)), duration=0.1 * scale))
    return Graph(out, pools={"api": 2, "db": 1})


FAMILIES: dict[str, Callable[..., Graph]] = {
    "chain": chain,
    "fan-out/fan-in": fan_out_fan_in,
    "diamond lattice": diamond_lattice,
    "random layered": random_layered,
    "alternating chains": alternating_chains,
    "chain + shorts": chain_and_shorts,
    "pool-constrained": pool_constrained,
}
#: the two graphs of the original issue (benchmarks.bound)
ISSUE_GRAPHS = {"chain+shorts": chain_and_shorts, "alternating chains": alternating_chains}


def trace_cases(folder: Path = TRACES) -> dict[str, Callable[..., Graph]]:
    """Every WfCommons trace in ``folder`` and in ``OWN_TRACES``, by file stem, as a
    builder like the families'."""
    from orchestrator.inputs.loaders import load_graph_file

    def builder(path: Path):
        return lambda scale=1.0: load_graph_file(path, scale)

    paths = {p.stem: p for d in (OWN_TRACES, folder) for p in sorted(d.glob("*.json"))}
    return {stem: builder(paths[stem]) for stem in sorted(paths)}


def scaled_to(graph: Graph, concurrency: int, target_s: float = 3.0) -> Graph:
    """``graph`` with every duration scaled so that its lower bound at ``concurrency``
    (max of critical path, total work / concurrency, and each pool's work / limit) is
    ``target_s``."""
    bound = make_plan(graph, concurrency, simulate_schedule=False).lower_bound_s
    if bound <= 0:
        return graph
    return Graph([s.scaled(target_s / bound) for s in graph.declared], graph.pools, graph.source)


# -- the other measures -------------------------------------------------------------
def noop_chain(n: int = 50) -> Graph:
    """n no-op services in a line: the makespan is n dispatch round trips."""
    return Graph(_chain("hop_", [0.0] * n))


def noop_fanout(n: int = 2000) -> Graph:
    """n independent no-op services."""
    return Graph([Service(f"fan_{i:05d}", duration=0.0) for i in range(n)])


def planner_graph(n: int, edges_per_service: float = 3.0, seed: int = 1) -> list[Service]:
    """n services, each after about ``edges_per_service`` earlier ones (so acyclic), mostly
    near it in index order, as in a layered pipeline. Returned as records, not a
    ``Graph``, so that building the graph can be timed."""
    rng = random.Random(seed)
    width = 2 * int(edges_per_service) + 1
    out = []
    for i in range(n):
        k = min(i, rng.randint(0, width - 1) if i else 0)
        # earlier services within a window of 1000: local structure, long paths
        ups = rng.sample(range(max(0, i - 1000), i), k) if k else []
        out.append(Service(f"svc_{i:06d}", after=tuple(f"svc_{u:06d}" for u in ups),
                           duration=round(rng.uniform(0.01, 2.0), 3)))
    return out
