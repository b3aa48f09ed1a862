"""The benchmark graph families (benchmarks/graphs.py) are well-formed and deterministic."""
from __future__ import annotations

import pytest

from benchmarks.graphs import FAMILIES, noop_chain, noop_fanout, planner_graph, pool_constrained, scaled_to, trace_cases
from orchestrator.planning.graph import Graph
from orchestrator.planning.planner import make_plan
from orchestrator.planning.validate import validate


def shape(g: Graph):
    return [(n, g.services[n].duration, g.services[n].pool, tuple(g.services[n].after)) for n in g.names]


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_is_valid_deterministic_and_timed(name):
    g = FAMILIES[name]()
    validate(g)  # acyclic, every dependency known, pools have limits
    assert len(g.declared) == len(g) > 1  # no duplicate names
    assert all(s.duration and s.duration > 0 for s in g)
    assert shape(g) == shape(FAMILIES[name]())  # seeded: the same graph every time


@pytest.mark.parametrize("name", list(FAMILIES))
@pytest.mark.parametrize("conc", [2, 4, 8])
def test_scaled_to_puts_the_lower_bound_at_the_target(name, conc):
    g = scaled_to(FAMILIES[name](), conc, 3.0)
    assert make_plan(g, conc).lower_bound_s == pytest.approx(3.0)


def test_documented_shapes():
    assert make_plan(FAMILIES["alternating chains"](), 2).critical_path_s == pytest.approx(2.2)
    assert make_plan(FAMILIES["chain + shorts"](), 2).lower_bound_s == pytest.approx(3.0)
    assert len(FAMILIES["diamond lattice"]()) == 36
    assert len(FAMILIES["random layered"]()) == 64
    plan = make_plan(pool_constrained(), 8)
    assert plan.constraint.startswith("pool ")  # the pools bind, not the concurrency
    assert plan.pool_bounds_s["db"] == pytest.approx(3.2)


def test_noop_shapes():
    chain = noop_chain(50)
    assert len(chain) == 50 and len(chain.edges) == 49
    assert make_plan(chain, 8).critical_path == [f"hop_{i}" for i in range(50)]  # one path through everything
    fan = noop_fanout(2000)
    assert len(fan) == 2000 and not fan.edges


def test_planner_graph_is_acyclic_with_three_edges_on_average():
    services = planner_graph(5000)
    g = Graph(services)
    validate(g, check_imports=False)
    assert len(g.edges) / len(g) == pytest.approx(3.0, rel=0.1)
    assert [s.name for s in planner_graph(5000)] == [s.name for s in services]


def test_every_trace_loads():
    cases = trace_cases()
    if not cases:
        pytest.skip("no WfCommons traces in ../shared/traces")
    for name, build in cases.items():
        g = build()
        validate(g, check_imports=False)
        assert len(g) > 10, name
