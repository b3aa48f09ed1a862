"""Graph families the benchmarks run (plain data; no engine imported)."""
from __future__ import annotations

from orchestrator.graph import Graph
from orchestrator.model import Service


def _chain(prefix: str, durations, first_after=()):
    out = []
    for i, d in enumerate(durations):
        after = (f"{prefix}{i - 1}",) if i else tuple(first_after)
        out.append(Service(f"{prefix}{i}", after=after, duration=d))
    return out


def chain_and_shorts(scale: float = 1.0) -> Graph:
    """A chain of 6 x 0.5 s plus 12 independent 0.25 s services (run at 2 slots)."""
    return Graph(_chain("chain_", [0.5 * scale] * 6)
                 + [Service(f"short_{i:02d}", duration=0.25 * scale) for i in range(12)])


def alternating_chains(scale: float = 1.0) -> Graph:
    """Two 4-service chains, 1.0/0.1 s alternating in opposite phase (run at 2 slots).

    A level-by-level executor waits for the slowest service of every level:
    4 x 1.0 s = 4.0 s against a critical path of 2.2 s (1.8x).
    """
    return Graph(_chain("a", [1.0 * scale, 0.1 * scale] * 2) + _chain("b", [0.1 * scale, 1.0 * scale] * 2))


ISSUE_GRAPHS = {"chain+shorts": chain_and_shorts, "alternating chains": alternating_chains}
