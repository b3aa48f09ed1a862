"""Loaders: graph files (JSON, TOML), WfFormat traces, modules of @service functions, and the
one-line or collected errors for every kind of bad input."""
from __future__ import annotations

import json
import math
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.inputs.loaders import load_graph_file, load_module
from orchestrator.planning.errors import CritpathError, GraphError
from orchestrator.planning.planner import make_plan
from orchestrator.planning.validate import validate
from tests.helpers.graphs import DATA

GRAPH = {
    "services": [
        {"name": "load_orders", "duration": 2.0, "pool": "warehouse", "tags": ["load"]},
        {"name": "load_fx", "duration": 0.5, "kind": "cpu", "retries": 1, "retry_delay": 0.5},
        {"name": "build_revenue", "after": ["load_orders", "load_fx"], "pool": "warehouse",
         "call": "orchestrator.planning.model:service", "params": {"currency": "EUR", "days": [1, 2]},
         "estimate": 3.0, "timeout": 60, "retries": 2},
    ],
    "pools": {"warehouse": 2},
}

TOML = """\
[[services]]
name = "load_orders"
duration = 2.0
pool = "warehouse"
tags = ["load"]

[[services]]
name = "load_fx"
duration = 0.5
kind = "cpu"
retries = 1
retry_delay = 0.5

[[services]]
name = "build_revenue"
after = ["load_orders", "load_fx"]
pool = "warehouse"
call = "orchestrator.planning.model:service"
params = { currency = "EUR", days = [1, 2] }
estimate = 3.0
timeout = 60
retries = 2

[pools]
warehouse = 2
"""


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def write_json(tmp_path, data, name: str = "graph.json"):
    return write(tmp_path, name, json.dumps(data, indent=2))


def problems_of(tmp_path, data) -> list[str]:
    with pytest.raises(GraphError) as err:
        load_graph_file(write_json(tmp_path, data))
    return err.value.problems


# -- graph files ----------------------------------------------------------------------------
def test_json_graph_file_loads_every_field(tmp_path):
    path = write_json(tmp_path, GRAPH)
    g = load_graph_file(path)
    assert g.names == ["build_revenue", "load_fx", "load_orders"]
    assert g.edges == [("load_orders", "build_revenue"), ("load_fx", "build_revenue")]
    assert g.pools == {"warehouse": 2}
    assert g.source == str(path)
    rev = g.services["build_revenue"]
    assert (rev.call, rev.estimate, rev.timeout, rev.retries, rev.pool) == (
        "orchestrator.planning.model:service", 3.0, 60.0, 2, "warehouse")
    assert dict(rev.params) == {"currency": "EUR", "days": [1, 2]}
    fx = g.services["load_fx"]
    assert (fx.duration, fx.kind, fx.retries, fx.retry_delay, fx.call) == (0.5, "cpu", 1, 0.5, None)
    assert g.services["load_orders"].tags == ("load",)
    validate(g)


def test_toml_graph_file_loads_the_same_graph(tmp_path):
    from_json = load_graph_file(write_json(tmp_path, GRAPH))
    from_toml = load_graph_file(write(tmp_path, "graph.toml", TOML))
    assert list(from_toml) == list(from_json)  # Service equality leaves params out
    assert [dict(s.params) for s in from_toml] == [dict(s.params) for s in from_json]
    assert from_toml.pools == from_json.pools


def test_suffix_is_case_insensitive(tmp_path):
    assert len(load_graph_file(write_json(tmp_path, GRAPH, "GRAPH.JSON"))) == 3


# -- WfFormat traces -------------------------------------------------------------------------
def test_real_trace_loads_as_synthetic_services():
    """sarek-dirt02-001 in /work/shared/traces/README.md: 26 tasks, 50 edges,
    critical path 309.7 s, total work 393.2 s."""
    path = DATA / "sarek-dirt02-001.json"
    g = load_graph_file(path)
    assert (len(g), len(g.edges)) == (26, 50)
    plan = make_plan(g, max_concurrency=4)
    assert round(plan.critical_path_s, 1) == 309.7
    assert round(plan.total_work_s, 1) == 393.2
    assert plan.critical_path[0] == "NFCORE_SAREK.SAREK.PREPARE_GENOME.BWAMEM1_INDEX_6"
    assert plan.critical_path[-1] == "NFCORE_SAREK.SAREK.MULTIQC_35"

    raw = json.loads(path.read_text())["workflow"]
    runtime = {t["id"]: t["runtimeInSeconds"] for t in raw["execution"]["tasks"]}
    for task in raw["specification"]["tasks"]:
        s = g.services[task["id"]]
        assert s.duration == runtime[task["id"]] and s.call is None
        assert sorted(s.after) == sorted(task["parents"])
    validate(g)


def test_trace_time_scale_multiplies_durations():
    full = load_graph_file(DATA / "sarek-dirt02-001.json")
    fast = load_graph_file(DATA / "sarek-dirt02-001.json", time_scale=0.01)
    assert [s.duration * 0.01 for s in full] == pytest.approx([s.duration for s in fast])
    assert make_plan(fast, 4).critical_path_s == pytest.approx(3.09657)


def test_older_trace_schema_with_inline_runtimes_and_parents_by_name(tmp_path):
    trace = {"workflow": {"tasks": [
        {"name": "split_ID1", "id": "ID1", "runtime": 2.5, "parents": []},
        {"name": "work_ID2", "id": "ID2", "runtimeInSeconds": 1.0, "parents": ["split_ID1"]},
        {"name": "merge_ID3", "runtime": 0.5, "parents": ["ID2"]},
    ]}}
    g = load_graph_file(write_json(tmp_path, trace, "old.json"))
    assert g.names == ["ID1", "ID2", "merge_ID3"]
    assert g.edges == [("ID1", "ID2"), ("ID2", "merge_ID3")]
    assert [g.services[n].duration for n in g.names] == [2.5, 1.0, 0.5]


def test_trace_edges_given_only_as_children(tmp_path):
    trace = {"workflow": {"specification": {"tasks": [
        {"id": "a", "children": ["b"]}, {"id": "b", "children": []}]},
        "execution": {"tasks": [{"id": "a", "runtimeInSeconds": 1}, {"id": "b", "runtimeInSeconds": 2}]}}}
    assert load_graph_file(write_json(tmp_path, trace)).edges == [("a", "b")]


def test_trace_problems_are_collected(tmp_path):
    trace = {"workflow": {"specification": {"tasks": [
        {"id": "a", "parents": []}, {"id": "b", "parents": "a"}, {"parents": []},
        {"id": "c", "parents": []}]},
        "execution": {"tasks": [{"id": "a", "runtimeInSeconds": -1}, {"id": "b", "runtimeInSeconds": 1}]}}}
    problems = problems_of(tmp_path, trace)
    assert problems == sorted([
        "task 'a': 'runtimeInSeconds' must be >= 0 seconds, got -1",
        "task 'b': 'parents' takes a list of task ids; write [\"a\"]",
        "task 'c': no runtimeInSeconds recorded; the trace is incomplete",
        "workflow.specification.tasks[2]: the task id must be a non-empty string, got None (null)",
    ])


@pytest.mark.parametrize("workflow", [None, [], {}, {"specification": {"tasks": []}}, {"tasks": {}}])
def test_trace_without_tasks(tmp_path, workflow):
    with pytest.raises(GraphError, match="tasks"):
        load_graph_file(write_json(tmp_path, {"workflow": workflow}))


# -- modules of @service functions ------------------------------------------------------------
def test_module_of_services():
    g = load_module("tests.servicemods.demo")
    assert g.names == ["build_revenue", "load_fx", "load_orders"]
    assert g.pools == {"warehouse": 2}
    assert g.source == "tests.servicemods.demo"
    rev = g.services["build_revenue"]
    assert rev.call == "tests.servicemods.demo:build_revenue"
    assert (rev.after, rev.retries, rev.timeout, dict(rev.params)) == (
        ("load_orders", "load_fx"), 2, 60.0, {"currency": "EUR"})
    validate(g)  # imports every call


def test_several_modules_count_a_reexported_service_once():
    g = load_module("tests.servicemods.demo, tests.servicemods.more")
    assert g.names == ["build_revenue", "load_fx", "load_orders", "publish"]
    assert len(g.declared) == 4
    validate(g)


def test_module_time_scale_multiplies_estimates():
    g = load_module("tests.servicemods.demo", time_scale=0.5)
    assert g.services["load_orders"].est == 1.0
    assert g.services["build_revenue"].estimate is None  # nothing to scale; planner uses the default


def test_module_that_does_not_import():
    with pytest.raises(CritpathError) as err:
        load_module("x.y")
    assert str(err.value) == ("--module 'x.y': cannot import it (ModuleNotFoundError: No module "
                              "named 'x'); check the import path and that its folder is on PYTHONPATH")


@pytest.fixture
def modules(tmp_path, monkeypatch):
    """Write throwaway modules into a folder on sys.path."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(name: str, source: str) -> str:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        return name

    return make


def test_module_whose_own_import_is_missing(modules):
    name = modules("needs_missing_dep", "import no_such_dependency_xyz\n")
    with pytest.raises(CritpathError, match=r"it imports 'no_such_dependency_xyz', which is not installed"):
        load_module(name)


def test_module_that_raises_on_import(modules):
    name = modules("raises_on_import", "raise RuntimeError('no config\\nfound')\n")
    with pytest.raises(CritpathError) as err:
        load_module(name)
    assert "importing it raised RuntimeError: no config found;" in str(err.value)
    assert "\n" not in str(err.value)


def test_module_without_services(modules):
    name = modules("no_services_here", "def f():\n    pass\n")
    with pytest.raises(CritpathError, match=r"--module 'no_services_here': no @service functions in it"):
        load_module(name)


def test_module_service_fields_are_checked_like_a_files(modules):
    name = modules("bad_fields", """
        from orchestrator.planning.model import service

        POOLS = {"warehouse": 0, "gpu": True}

        @service(retries=-1, timeout=0)
        def flaky():
            pass
    """)
    with pytest.raises(GraphError) as err:
        load_module(name)
    assert err.value.problems == [
        "bad_fields.POOLS: pool 'gpu' has limit True; a pool limit is a whole number from 1 to 1000000 "
        "(how many of its services may run at once)",
        "bad_fields.POOLS: pool 'warehouse' has limit 0; a pool limit is a whole number from 1 to 1000000 "
        "(how many of its services may run at once)",
        "service 'flaky': 'retries' must be between 0 and 100, got -1",
        "service 'flaky': 'timeout' must be > 0 seconds, got 0; leave it out for no timeout",
    ]
    assert err.value.source == "bad_fields"


def test_modules_that_disagree_on_a_pool_limit(modules):
    name = modules("other_pools", """
        from orchestrator.planning.model import service
        POOLS = {"warehouse": 5}

        @service
        def other():
            pass
    """)
    with pytest.raises(GraphError, match=r"pool 'warehouse' has limit 2 in one module and 5 in 'other_pools'"):
        load_module(f"tests.servicemods.demo,{name}")


@pytest.mark.parametrize("path", ["", " , ", "a,,b", None])
def test_module_path_must_name_modules(path):
    with pytest.raises(CritpathError, match="give an import path such as 'services.demo'"):
        load_module(path)


# -- time scale -------------------------------------------------------------------------------
def test_time_scale_multiplies_durations_and_estimates(tmp_path):
    g = load_graph_file(write_json(tmp_path, GRAPH), time_scale=0.1)
    assert g.services["load_orders"].duration == pytest.approx(0.2)
    assert g.services["build_revenue"].estimate == pytest.approx(0.3)
    assert g.services["build_revenue"].timeout == 60.0  # a limit, not a duration: not scaled


@pytest.mark.parametrize("scale", [0, -1, math.nan, math.inf, 10 ** 400, True, "2", None])
def test_time_scale_must_be_a_positive_finite_number(tmp_path, scale):
    path = write_json(tmp_path, GRAPH)
    with pytest.raises(CritpathError, match=r"--time-scale .*: must be a finite number > 0"):
        load_graph_file(path, time_scale=scale)
    with pytest.raises(CritpathError, match=r"--time-scale"):
        load_module("tests.servicemods.demo", time_scale=scale)


def test_time_scale_that_makes_durations_absurd(tmp_path):
    with pytest.raises(GraphError) as err:
        load_graph_file(write_json(tmp_path, GRAPH), time_scale=1e7)
    assert err.value.problems == [
        "service 'build_revenue': 'estimate' times --time-scale 1e+07 is 3e+07 s, over the limit of "
        "1e+07 s; use a smaller --time-scale",
        "service 'load_orders': 'duration' times --time-scale 1e+07 is 2e+07 s, over the limit of "
        "1e+07 s; use a smaller --time-scale",
    ]


# -- reading and parsing: one line, naming the file and the line -------------------------------
def test_json_syntax_error_names_file_line_and_column(tmp_path):
    path = write(tmp_path, "graph.json", '{\n  "services": [\n    {"name": "a" "duration": 1}\n  ]\n}\n')
    with pytest.raises(CritpathError) as err:
        load_graph_file(path)
    assert str(err.value) == f"{path} line 3, column 18: Expecting ',' delimiter"


def test_toml_syntax_error_names_file_line_and_column(tmp_path):
    path = write(tmp_path, "graph.toml", '[[services]]\nname = "a"\nduration = \n')
    with pytest.raises(CritpathError) as err:
        load_graph_file(path)
    assert str(err.value) == f"{path} line 3, column 12: Invalid value"


def test_toml_error_at_end_of_document(tmp_path):
    path = write(tmp_path, "graph.toml", 'a = 1\na = 2')
    with pytest.raises(CritpathError) as err:
        load_graph_file(path)
    assert str(err.value) == f"{path}: Cannot overwrite a value at the end of the file"


def test_missing_file(tmp_path):
    with pytest.raises(CritpathError) as err:
        load_graph_file("nowhere/x.json")
    assert str(err.value) == "graph file 'nowhere/x.json' not found"


@pytest.mark.parametrize("text", ["", "  \n\t\n"])
@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_empty_file(tmp_path, text, suffix):
    path = write(tmp_path, "graph" + suffix, text)
    with pytest.raises(CritpathError, match=r"graph file '.*' is empty"):
        load_graph_file(path)


@pytest.mark.parametrize("name, shown", [("graph.yaml", ".yaml"), ("graph", "(none)")])
def test_unknown_suffix(tmp_path, name, shown):
    with pytest.raises(CritpathError) as err:
        load_graph_file(tmp_path / name)
    assert str(err.value) == (f"graph file {str(tmp_path / name)!r}: cannot tell its format from the "
                              f"suffix {shown}; use a .json or .toml file (or --module for Python services)")


def test_directory_instead_of_file(tmp_path):
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(CritpathError, match=r"is a directory"):
        load_graph_file(tmp_path / "dir.json")


def test_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "graph.json"
    path.write_bytes(b'{"services":\n [{"name": "caf\xe9"}]}')
    with pytest.raises(CritpathError) as err:
        load_graph_file(path)
    assert str(err.value) == f"{path} line 2: not UTF-8 text (byte 0xe9); save the file as UTF-8"


def test_deeply_nested_junk(tmp_path):
    path = write(tmp_path, "graph.json", "[" * 100_000 + "]" * 100_000)
    with pytest.raises(CritpathError, match="nested too deeply"):
        load_graph_file(path)


def test_number_with_thousands_of_digits(tmp_path):
    path = write(tmp_path, "graph.json", '{"services": [\n{"name": "a", "retries": ' + "9" * 5000 + "}]}")
    with pytest.raises(CritpathError) as err:
        load_graph_file(path)
    assert str(err.value) == f"{path} line 2: a number has thousands of digits; no field takes such a number"


# -- field-level problems: collected, each naming the service and the fix ----------------------
@pytest.mark.parametrize("field, value, problem", [
    ("retires", 2, "unknown field 'retires' (did you mean 'retries'?)"),
    ("depends_on", [], "unknown field 'depends_on'; known fields: name, after, call, params"),
    ("retries", -1, "'retries' must be between 0 and 100, got -1"),
    ("retries", 10 ** 30, "'retries' must be between 0 and 100, got 1000000000000000000000000000000"),
    ("retries", True, "'retries' must be a whole number, got True (a boolean)"),
    ("retries", 1.5, "'retries' must be a whole number, got 1.5 (a number)"),
    ("retries", "2", "'retries' must be a whole number, got '2' (a string)"),
    ("timeout", 0, "'timeout' must be > 0 seconds, got 0; leave it out for no timeout"),
    ("timeout", -5, "'timeout' must be > 0 seconds, got -5"),
    ("duration", False, "'duration' must be a number of seconds, got False (a boolean)"),
    ("duration", math.nan, "'duration' must be a finite number of seconds, got nan"),
    ("duration", math.inf, "'duration' must be a finite number of seconds, got inf"),
    ("duration", 1e300, "'duration' is 1e+300 s, over the limit of 1e+07 s; give it in seconds"),
    ("duration", 10 ** 400, "'duration' is 1000000000000"),
    ("estimate", -0.5, "'estimate' must be >= 0 seconds, got -0.5"),
    ("retry_delay", None, "'retry_delay' must be a number of seconds, got None (null)"),
    ("estimate", {"s": 1}, "'estimate' must be a number of seconds, got {'s': 1} (an object)"),
    ("kind", "gpu", "'kind' must be one of 'sleep', 'cpu', 'work', got 'gpu'"),
    ("kind", "cpus", "'kind' must be one of 'sleep', 'cpu', 'work', got 'cpus' (did you mean 'cpu'?)"),
    ("kind", ["cpu"], "'kind' must be one of 'sleep', 'cpu', 'work', got ['cpu']"),
    ("after", "load", "'after' takes a list of service names; write [\"load\"]"),
    ("after", {"load": 1}, "'after' must be a list of service names, got {'load': 1} (an object)"),
    ("after", ["load", 3], "'after' must be a list of non-empty service names, but it holds 3 (a number)"),
    ("after", [""], "'after' must be a list of non-empty service names, but it holds '' (a string)"),
    ("tags", [["x"]], "'tags' must be a list of non-empty strings, but it holds ['x'] (a list)"),
    ("params", [1, 2], "'params' must be an object of keyword arguments, got [1, 2] (a list)"),
    ("params", "a=1", "'params' must be an object of keyword arguments, got 'a=1' (a string)"),
    ("call", 5, "'call' must be a non-empty string, got 5 (a number)"),
    ("pool", "", "'pool' must be a non-empty string, got '' (a string)"),
])
def test_field_problem(tmp_path, field, value, problem):
    problems = problems_of(tmp_path, {"services": [{"name": "svc", "duration": 1, field: value}]})
    assert len(problems) == 1 and problems[0].startswith(f"service 'svc': {problem}"), problems


@pytest.mark.parametrize("name, problem", [
    (None, "services[0]: 'name' must be a non-empty string, got None (null)"),
    ("", "services[0]: 'name' must be a non-empty string, got '' (a string)"),
    ("   ", "services[0]: 'name' must be a non-empty string, got '   ' (a string)"),
    (7, "services[0]: 'name' must be a non-empty string, got 7 (a number)"),
    (["a"], "services[0]: 'name' must be a non-empty string, got ['a'] (a list)"),
    (" a", "services[0]: 'name' ' a' has surrounding spaces or control characters; remove them"),
    ("a\nb", "services[0]: 'name' 'a\\nb' has surrounding spaces or control characters; remove them"),
    ("a,b", "services[0]: 'name' 'a,b' cannot be selected with --select"),
    ("+a", "services[0]: 'name' '+a' cannot be selected with --select"),
    ("tag:a", "services[0]: 'name' 'tag:a' cannot be selected with --select"),
])
def test_bad_service_names(tmp_path, name, problem):
    problems = problems_of(tmp_path, {"services": [{"name": name, "duration": 1}]})
    assert len(problems) == 1 and problems[0].startswith(problem), problems


def test_unicode_names_are_fine(tmp_path):
    g = load_graph_file(write_json(tmp_path, {"services": [
        {"name": "données_clients", "duration": 1}, {"name": "報告", "after": ["données_clients"], "duration": 1}]}))
    assert g.edges == [("données_clients", "報告")]


def test_problem_uses_position_when_the_name_is_bad(tmp_path):
    problems = problems_of(tmp_path, {"services": [{"duration": 1}, {"name": 3, "retries": -1}]})
    assert problems == [
        "services[0]: 'name' must be a non-empty string, got None (null)",
        "services[1]: 'name' must be a non-empty string, got 3 (a number)",
        "services[1]: 'retries' must be between 0 and 100, got -1",
    ]


@pytest.mark.parametrize("document, problem", [
    ([], "the top level must be an object with a \"services\" list, got a list"),
    ("services", "the top level must be an object with a \"services\" list, got a string"),
    ({}, "\"services\" must be a non-empty list of services ([[services]] tables in TOML); it is missing"),
    ({"services": []}, "\"services\" must be a non-empty list of services ([[services]] tables in TOML); got []"),
    ({"services": {"a": {}}}, "\"services\" must be a non-empty list of services ([[services]] tables in TOML); got {'a': {}} (an object)"),
    ({"services": [["a"]]}, "services[0]: expected an object like {\"name\": \"load_orders\", \"after\": []}, got ['a'] (a list)"),
    ({"services": [{"name": "a", "duration": 1}], "servces": []},
     "unknown top-level field 'servces' (did you mean 'services'?); a graph file has \"services\" and \"pools\""),
    ({"services": [{"name": "a", "duration": 1}], "pools": [4]},
     "\"pools\" must be an object of pool limits like {\"warehouse\": 4}, got [4] (a list)"),
    ({"services": [{"name": "a", "duration": 1}], "pools": {"w": 0}},
     "\"pools\": pool 'w' has limit 0; a pool limit is a whole number from 1 to 1000000 (how many of its services may run at once)"),
    ({"services": [{"name": "a", "duration": 1}], "pools": {"w": 2.5}}, "\"pools\": pool 'w' has limit 2.5"),
    ({"services": [{"name": "a", "duration": 1}], "pools": {"w": True}}, "\"pools\": pool 'w' has limit True"),
    ({"services": [{"name": "a", "duration": 1}], "pools": {"w": 10 ** 100}}, "\"pools\": pool 'w' has limit 1000"),
    ({"services": [{"name": "a", "duration": 1}], "pools": {"": 1}}, "\"pools\": pool names must be non-empty strings, got ''"),
])
def test_document_shape_problems(tmp_path, document, problem):
    problems = problems_of(tmp_path, document)
    assert len(problems) == 1 and problems[0].startswith(problem), problems


def test_duplicate_json_keys_are_reported(tmp_path):
    path = write(tmp_path, "graph.json", '{"services": [{"name": "a", "duration": 1, "duration": 2}]}')
    with pytest.raises(GraphError) as err:
        load_graph_file(path)
    assert err.value.problems == ["the key 'duration' appears twice in one object; keep one"]


def test_every_problem_of_every_service_in_one_error(tmp_path):
    path = write_json(tmp_path, {"services": [
        {"name": "a", "retires": 2, "duration": -1},
        {"name": "b", "after": "a", "kind": "gpu"},
        {"name": "c", "params": [], "timeout": 0},
    ], "pools": {"w": 0}})
    with pytest.raises(GraphError) as err:
        load_graph_file(path)
    text = str(err.value)
    assert text.startswith(f"7 problems in graph in {path}:\n  - ")
    assert err.value.source == str(path)
    assert [p.split(":")[0] for p in err.value.problems] == [
        '"pools"', "service 'a'", "service 'a'", "service 'b'", "service 'b'", "service 'c'", "service 'c'"]


# -- no traceback for any malformed input ------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
field_names = st.sampled_from(["name", "after", "call", "params", "duration", "kind", "pool", "retries",
                               "retry_delay", "timeout", "estimate", "tags", "retires"])
service_like = st.dictionaries(field_names, json_values, max_size=6) | json_values
documents = st.fixed_dictionaries({}, optional={
    "services": st.lists(service_like, max_size=4) | json_values, "pools": json_values,
    "workflow": json_values})


@settings(max_examples=300, deadline=None)
@given(document=documents)
def test_malformed_documents_raise_only_critpath_errors(tmp_path_factory, document):
    path = tmp_path_factory.mktemp("fuzz") / "graph.json"
    path.write_text(json.dumps(document))
    try:
        graph = load_graph_file(path)
    except CritpathError:
        return
    try:
        validate(graph, check_imports=False)
    except CritpathError:
        pass
