"""validate(): every problem that would stop a run, each named with its fix, all in one error."""
from __future__ import annotations

import pytest

from orchestrator.planning.errors import GraphError
from orchestrator.planning.graph import Graph
from orchestrator.planning.model import Service
from orchestrator.planning.validate import validate
from tests.helpers.graphs import TOPOLOGIES, synth


def problems(graph: Graph, check_imports: bool = True) -> list[str]:
    with pytest.raises(GraphError) as err:
        validate(graph, check_imports=check_imports)
    return err.value.problems


def called(name: str, call: str, after=(), **fields) -> Service:
    return Service(name=name, call=call, after=tuple(after), **fields)


@pytest.mark.parametrize("name", TOPOLOGIES)
def test_named_topologies_are_valid(name):
    assert validate(TOPOLOGIES[name]()) is None


def test_cycle_is_reported_in_order():
    """a -> b -> c -> a, plus d after c outside the cycle."""
    g = Graph([synth("b", after=["a"]), synth("c", after=["b"]), synth("a", after=["c"]),
               synth("d", after=["c"])])
    assert problems(g) == ["cycle a -> b -> c -> a: remove one of these dependencies"]


def test_cycle_starts_at_the_smallest_name_whatever_the_entry_point():
    """z -> m -> b -> z: reported from 'b', in edge direction."""
    g = Graph([synth("z", after=["b"]), synth("m", after=["z"]), synth("b", after=["m"])])
    assert problems(g) == ["cycle b -> z -> m -> b: remove one of these dependencies"]


def test_two_separate_cycles():
    g = Graph([synth("a", after=["b"]), synth("b", after=["a"]),
               synth("x", after=["y"]), synth("y", after=["x"])])
    assert problems(g) == ["cycle a -> b -> a: remove one of these dependencies",
                           "cycle x -> y -> x: remove one of these dependencies"]


def test_unknown_dependency_with_suggestion():
    g = Graph([synth("load_orders"), synth("build", after=["lod_orders"])])
    assert problems(g) == ["service 'build' runs after unknown service 'lod_orders' "
                           "(did you mean 'load_orders'?); fix the name or remove it from 'after'"]


def test_unknown_dependency_without_suggestion():
    g = Graph([synth("load_orders"), synth("build", after=["zzz"])])
    assert problems(g) == ["service 'build' runs after unknown service 'zzz'; "
                           "fix the name or remove it from 'after'"]


def test_duplicate_names():
    g = Graph([synth("a"), synth("b"), synth("a", 2.0), synth("a", 3.0)])
    assert problems(g) == ["service 'a' is declared 3 times; names must be unique: "
                           "rename or remove the copies"]


def test_service_after_itself():
    g = Graph([synth("a", after=["a"])])
    assert problems(g) == ["service 'a' runs after itself: remove 'a' from its 'after'"]


def test_pool_without_limit_names_its_service():
    g = Graph([synth("a", pool="warehose")], pools={"warehouse": 2})
    assert problems(g) == [
        "service 'a' uses pool 'warehose', which has no limit (did you mean 'warehouse'?): add "
        "{'warehose': N} to the pools (\"pools\" in a graph file, POOLS in a module) or fix the pool name"]


def test_pool_without_limit_groups_many_services():
    g = Graph([synth(f"s{i}", pool="gpu") for i in range(5)])
    assert problems(g) == [
        "services 's0', 's1', 's2' and 2 more use pool 'gpu', which has no limit: add {'gpu': N} to "
        "the pools (\"pools\" in a graph file, POOLS in a module) or fix the pool name"]


@pytest.mark.parametrize("limit", [0, -1, 2.5, True, "4", None])
def test_pool_limit_must_be_a_whole_number_of_at_least_one(limit):
    g = Graph([synth("a", pool="w")], pools={"w": limit})
    assert problems(g) == [f"pool 'w' has limit {limit!r}; a pool limit is a whole number from 1 to 1000000 "
                           "(how many of its services may run at once)"]


def test_service_with_neither_call_nor_duration():
    g = Graph([Service(name="a")])
    assert problems(g) == ["service 'a' has neither 'call' nor 'duration': give it a \"call\": "
                           "\"module:function\" to run, or a synthetic \"duration\" in seconds"]


def test_service_with_both_call_and_duration():
    g = Graph([Service(name="a", call="orchestrator.planning.model:service", duration=1.0)])
    assert problems(g) == ["service 'a' has both 'call' and 'duration': keep \"call\" to run a "
                           "function or \"duration\" for a synthetic service, not both"]


@pytest.mark.parametrize("call", ["orchestrator.planning.model.service", "a:b:c", ":f", "m:", "my-mod:f",
                                  "m:f()", "m :f"])
def test_call_must_be_module_colon_function(call):
    g = Graph([called("a", call)])
    expected = (f"service 'a': call {call!r} is not of the form 'module:function' "
                "(e.g. 'services.demo:load_orders')")
    assert problems(g, check_imports=False) == [expected]
    assert problems(g) == [expected]


def test_nested_function_cannot_be_imported_by_workers():
    g = Graph([called("a", "tests.x:make.<locals>.run")])
    assert problems(g, check_imports=False) == [
        "service 'a': call 'tests.x:make.<locals>.run' is a nested function, which worker processes "
        "cannot import: define it at module level"]


def test_call_whose_module_does_not_import():
    g = Graph([called("a", "no_such_pkg.jobs:run")])
    assert problems(g) == [
        "service 'a': call 'no_such_pkg.jobs:run': cannot import module 'no_such_pkg.jobs' "
        "(ModuleNotFoundError: No module named 'no_such_pkg'); check the module path and that its "
        "folder is on PYTHONPATH"]
    validate(g, check_imports=False)  # the form is right; only the import fails


def test_call_to_a_missing_function_suggests_one():
    g = Graph([called("a", "tests.servicemods.demo:load_order")])
    assert problems(g) == ["service 'a': call 'tests.servicemods.demo:load_order': "
                           "'tests.servicemods.demo' has no attribute 'load_order' "
                           "(did you mean 'load_orders'?)"]


def test_call_to_a_missing_nested_attribute():
    g = Graph([called("a", "orchestrator.planning.graph:Graph.subgrap")])
    assert problems(g) == ["service 'a': call 'orchestrator.planning.graph:Graph.subgrap': "
                           "'orchestrator.planning.graph.Graph' has no attribute 'subgrap' (did you mean 'subgraph'?)"]


def test_call_to_something_not_callable():
    g = Graph([called("a", "orchestrator.planning.model:KINDS")])
    assert problems(g) == ["service 'a': call 'orchestrator.planning.model:KINDS' is not callable "
                           "(it is 'tuple'); point it at a function"]


def test_good_calls_pass_including_methods():
    validate(Graph([called("a", "tests.servicemods.demo:load_orders"),
                    called("b", "orchestrator.planning.graph:Graph.subgraph", after=["a"])]))


def test_every_problem_is_reported_at_once():
    g = Graph([
        synth("a", after=["c"]), synth("b", after=["a"]), synth("c", after=["b"]),  # cycle
        synth("d", after=["lod"]), synth("d"),  # unknown dependency, duplicate
        synth("e", after=["e"], pool="gpu"),  # itself, pool without limit
        Service(name="f"), called("g", "nope"),  # nothing to run, bad call
    ], pools={"w": 0}, source="graph.json")
    with pytest.raises(GraphError) as err:
        validate(g)
    assert err.value.problems == sorted(err.value.problems)
    assert [p.split(" ")[0] + " " + p.split(" ")[1] for p in err.value.problems] == [
        "cycle a", "pool 'w'", "service 'd'", "service 'd'", "service 'e'", "service 'e'",
        "service 'f'", "service 'g':"]
    assert str(err.value).startswith("8 problems in graph in graph.json:\n  - cycle a -> b -> c -> a")


def test_big_graph_with_many_typos_names_every_one():
    names = [f"svc_{i:05d}" for i in range(5_000)]
    g = Graph([synth(n) for n in names] + [synth(f"bad_{i}", after=[f"svc_{i:05d}x"]) for i in range(100)])
    found = problems(g)
    assert len(found) == 100
    assert all("runs after unknown service" in p for p in found)
    assert "(did you mean 'svc_00000'" in found[0]  # the first typos still get a suggestion
