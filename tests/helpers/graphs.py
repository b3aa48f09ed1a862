"""Graphs for tests: service builders and the named topologies, defined once.

Service builders (every test module takes them from here, none defines its own):

    synth(name, seconds, after)        a synthetic service: sleeps ``seconds`` on its worker
    call(name, fn, after, params=...)  runs ``tests.helpers.services:fn`` (the contract's bodies)
    fault(name, fn, after, params=...) runs ``tests.helpers.faults:fn`` (the reliability bodies)
    worker_pid("host:pid/thread")      the pid in a worker name of a report

Named topologies: small graphs with known critical paths and makespans. Each builder returns a
fresh ``Graph`` of synthetic services (``duration`` in seconds), drawn in its docstring.
``TOPOLOGIES`` maps the names to the builders so tests can parametrize over them; tests/conftest.py
makes each builder a fixture of the same name.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

from orchestrator.planning.graph import Graph
from orchestrator.planning.model import Service

#: tests/data: recorded reports and traces the tests read
DATA = Path(__file__).resolve().parents[1] / "data"
SERVICES = "tests.helpers.services"
FAULTS = "tests.helpers.faults"


def synth(name: str, seconds: float = 1.0, after: Iterable[str] = (), **fields) -> Service:
    """A synthetic service: sleeps ``seconds``."""
    return Service(name=name, after=tuple(after), duration=seconds, **fields)


def call(name: str, fn: str, after: Iterable[str] = (), **fields) -> Service:
    """A service whose body is ``tests.helpers.services:fn`` (``params=`` its keyword arguments)."""
    return Service(name, after=tuple(after), call=f"{SERVICES}:{fn}", params=fields.pop("params", {}), **fields)


def fault(name: str, fn: str, after: Iterable[str] = (), **fields) -> Service:
    """A service whose body is ``tests.helpers.faults:fn`` (``params=`` its keyword arguments)."""
    return Service(name, after=tuple(after), call=f"{FAULTS}:{fn}", params=fields.pop("params", {}), **fields)


def worker_pid(worker: str) -> int:
    """``host:pid`` or ``host:pid/thread`` -> pid."""
    return int(worker.split(":", 1)[1].split("/", 1)[0])


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
