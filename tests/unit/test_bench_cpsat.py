"""The CP-SAT model behind the benchmarks' best-schedule column (benchmarks/cpsat.py).

Each schedule it returns must respect every precedence and every limit (checked by
``verify``, which needs no ortools), and on tiny graphs its optimum must be the one
known by hand. No wall-clock assertions: the time limits are generous for graphs
this small, and only the status and values are asserted.
"""
from __future__ import annotations

import pytest

from benchmarks.cpsat import best_schedule, durations_ms, list_schedule, verify
from benchmarks.graphs import chain_and_shorts, random_layered
from orchestrator.planning.graph import Graph
from tests.helpers.graphs import synth

pytest.importorskip("ortools", reason="benchmark-only dependency: pip install -e '.[bench]'")


def solve(graph, conc):
    sol = best_schedule(graph, conc, time_limit_s=20, workers=2)
    assert verify(graph, sol.starts_ms, sol.durations_ms, conc) == []
    return sol


def test_chain_at_one_slot_is_its_length():
    """a (1 s) -> b (2 s) -> c (1 s): 4 s, whatever the concurrency."""
    g = Graph([synth("a", 1), synth("b", 2, ["a"]), synth("c", 1, ["b"])])
    sol = solve(g, 1)
    assert sol.optimal and sol.makespan_s == 4.0 and sol.bound_s == 4.0
    assert list(sol.starts_ms) == [0, 1000, 3000]


def test_beats_the_list_schedule_where_greedy_is_not_optimal():
    """Five independent services 3, 3, 2, 2, 2 s on 2 slots.

    Longest first (the planner's policy) puts 3+2+2 on one slot: 7 s.
    The optimum pairs the 3s and the 2s: 3+3 = 2+2+2 = 6 s.
    """
    g = Graph([synth(f"t{i}", d) for i, d in enumerate([3, 3, 2, 2, 2])])
    assert list_schedule(g, durations_ms(g), 2)[0] == 7000
    sol = solve(g, 2)
    assert sol.optimal and sol.makespan_s == 6.0


def test_pool_limit_is_a_cumulative_constraint():
    """x, y in pool 'db' (limit 1), z free, 3 slots: x and y cannot overlap -> 2 s."""
    g = Graph([synth("x", 1, pool="db"), synth("y", 1, pool="db"), synth("z", 1)], pools={"db": 1})
    sol = solve(g, 3)
    assert sol.optimal and sol.makespan_s == 2.0


def test_chain_and_shorts_reaches_the_lower_bound():
    sol = solve(chain_and_shorts(), 2)
    assert sol.optimal and sol.makespan_s == 3.0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_dags_valid_and_never_worse_than_the_plan(seed):
    g = random_layered(layers=4, width=4, seed=seed)
    d = durations_ms(g)
    greedy, _ = list_schedule(g, d, 2)
    sol = solve(g, 2)
    assert sol.bound_s <= sol.makespan_s <= greedy / 1000


def test_verify_names_every_kind_of_violation():
    g = Graph([synth("a", 1), synth("b", 1, ["a"]), synth("c", 1, pool="p"), synth("d", 1, pool="p")],
              pools={"p": 1})
    problems = verify(g, [0, 500, 0, 0], [1000, 1000, 1000, 1000], 2)
    assert any("'b' starts at 500 before 'a' ends at 1000" in p for p in problems)
    assert any("over the concurrency limit 2" in p for p in problems)
    assert any("over the pool 'p' limit 1" in p for p in problems)
    assert verify(g, [0, 1000, 1000, 2000], [1000, 1000, 1000, 1000], 2) == []
