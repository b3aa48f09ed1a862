"""Named topologies: small graphs with known critical paths and makespans.

Each builder returns a fresh ``Graph`` of synthetic services (``duration`` in seconds), drawn in
its docstring. ``TOPOLOGIES`` maps the names to the builders so tests can parametrize over them;
each builder is also a fixture of the same name.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import pytest

from orchestrator.planning.graph import Graph
from orchestrator.planning.model import Service

DATA = Path(__file__).parent / "data"


def synth(name: str, seconds: float = 1.0, after: Iterable[str] = (), **fields) -> Service:
    """A synthetic service: sleeps ``seconds``."""
    return Service(name=name, after=tuple(after), duration=seconds, **fields)


def chain() -> Graph:
    """Four 1 s services in a line.

        a -> b -> c -> d
    """
    return Graph([synth("a"), synth("b", after=["a"]), synth("c", after=["b"]), synth("d", after=["c"])])


def diamond() -> Graph:
    """One fan-out, one fan-in; the upper branch is longer.

             b (2 s)
           /         \\
      a (1 s)         d (1 s)
           \\         /
             c (1 s)
    """
    return Graph([synth("a", tags=["extract"]), synth("b", 2.0, ["a"], tags=["transform"]),
                  synth("c", 1.0, ["a"], tags=["transform"]), synth("d", 1.0, ["b", "c"])])


def fan_out_fan_in() -> Graph:
    """A 0.5 s source, six 1 s workers, a 0.5 s sink.

              w0
            / ..  \\
      src --  w2 --  sink
            \\ ..  /
              w5
    """
    workers = [synth(f"w{i}", 1.0, ["src"]) for i in range(6)]
    return Graph([synth("src", 0.5), *workers, synth("sink", 0.5, [w.name for w in workers])])


def two_alternating_chains() -> Graph:
    """Two chains of four whose long and short steps alternate in opposite phase.

      a1 (1.0) -> a2 (0.1) -> a3 (1.0) -> a4 (0.1)
      b1 (0.1) -> b2 (1.0) -> b3 (0.1) -> b4 (1.0)
    """
    a = [synth(f"a{i + 1}", d, [f"a{i}"] if i else []) for i, d in enumerate([1.0, 0.1, 1.0, 0.1])]
    b = [synth(f"b{i + 1}", d, [f"b{i}"] if i else []) for i, d in enumerate([0.1, 1.0, 0.1, 1.0])]
    return Graph(a + b)


def chain_and_shorts() -> Graph:
    """A chain of six 0.5 s steps and twelve independent 0.25 s checks.

      step_1 -> step_2 -> ... -> step_6      (0.5 s each, 3.0 s in all)
      check_01  check_02  ...  check_12      (0.25 s each, 3.0 s in all)

    Critical-path-first at two slots keeps the chain busy on one slot and the
    checks on the other: 3.0 s, the lower bound. Name order would run the
    checks first (two at a time, 1.5 s) and finish at 4.5 s.
    """
    steps = [synth(f"step_{i}", 0.5, [f"step_{i - 1}"] if i > 1 else [], tags=["chain"])
             for i in range(1, 7)]
    checks = [synth(f"check_{i:02d}", 0.25, tags=["check"]) for i in range(1, 13)]
    return Graph(steps + checks)


def pool_constrained() -> Graph:
    """Four 1 s loads share the 'warehouse' pool, limit 1; 'docs' needs no pool.

                 load_a \\
      extract -- load_b --  report        [load_* in pool warehouse, limit 1]
       (0.5 s)   load_c --  (0.5 s)
                 load_d /
      docs (1 s)
    """
    loads = [synth(f"load_{x}", 1.0, ["extract"], pool="warehouse") for x in "abcd"]
    return Graph([synth("extract", 0.5), *loads, synth("report", 0.5, [s.name for s in loads]),
                  synth("docs", 1.0)], pools={"warehouse": 1})


TOPOLOGIES: dict[str, Callable[[], Graph]] = {
    f.__name__: f for f in (chain, diamond, fan_out_fan_in, two_alternating_chains,
                            chain_and_shorts, pool_constrained)
}


def _fixture(builder: Callable[[], Graph]):
    @pytest.fixture(name=builder.__name__)
    def make() -> Graph:
        return builder()

    make.__doc__ = builder.__doc__
    return make


for _name, _builder in TOPOLOGIES.items():
    globals()[f"{_name}_graph"] = _fixture(_builder)


@pytest.fixture
def topologies() -> dict[str, Callable[[], Graph]]:
    return TOPOLOGIES


# -- live runs: a real Prefect server and every runner -----------------------------------------
# Defined in their own modules (tests/prefect_fixtures.py, tests/runner_fixtures.py) and made
# visible here; importing them costs nothing until a test asks for one.
from tests.prefect_fixtures import prefect_server  # noqa: F401
from tests.runner_fixtures import runner_name  # noqa: F401

MARKERS = {
    "dask": "runs a real Dask cluster with worker processes",
    "ray": "runs a real local Ray instance",
    "server": "starts a real Prefect server on 127.0.0.1",
}


def pytest_configure(config):
    """Registers the markers that pyproject.toml does not (it may, or may not, list them)."""
    known = {line.split(":", 1)[0].strip() for line in config.getini("markers")}
    for name, text in MARKERS.items():
        if name not in known:
            config.addinivalue_line("markers", f"{name}: {text}")


def pytest_collection_modifyitems(items):
    """Every test that needs ``prefect_server`` (directly or through a fixture) is a server test."""
    for item in items:
        if "prefect_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.server)


def pytest_sessionfinish(session, exitstatus):
    """Stop Prefect's temporary server (tests that run without an API URL start one) while
    pytest's streams are open: its own atexit hook logs to a closed stream otherwise."""
    import sys

    if "prefect.server.api.server" not in sys.modules:
        return
    from prefect.server.api.server import SubprocessASGIServer, subprocess_server_logger

    from orchestrator.flows.server import drain

    drain()
    # its "Stopping temporary server" line would go to the API being stopped, and fail
    subprocess_server_logger.disabled = True
    for server in list(SubprocessASGIServer._instances.values()):
        server.stop()
