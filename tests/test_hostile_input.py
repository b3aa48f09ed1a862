"""Reliability, hostile input: generated graph files and critpath.toml (tests/helpers/hostile.py),
junk bytes, cycles, numbers past a float, deep nesting and odd service names, in-process and
through the CLI.

The property: an error of one line naming the file or option (exit status 2, no traceback),
or a graph that validates and plans. No service name can steer a path out of ``.critpath``.

CLI tests run ``python -m orchestrator`` in a project folder of their own.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.inputs.config import load_config
from orchestrator.inputs.loaders import load_graph_file
from orchestrator.planning.errors import CritpathError
from orchestrator.planning.graph import Graph
from orchestrator.planning.planner import make_plan
from orchestrator.planning.validate import validate
from tests.helpers.graphs import synth
from tests.helpers.hostile import CONFIGS, DOCUMENTS, JUNK_TEXT, NAMES, to_toml
from tests.helpers.processes import assert_bad_input, critpath
from tests.helpers.projects import graph_file, last_report

#: hypothesis settings: no per-example deadline (a loaded machine is slow, not wrong); tmp_path is
#: shared by the examples of one test, each writes its file afresh
FUZZ = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def check_graph_file(path: Path) -> None:
    """The property: CritpathError naming the file, or a graph that validates and plans."""
    try:
        graph = load_graph_file(path)
        validate(graph)
    except CritpathError as err:
        assert str(err).strip() and path.name in str(err), repr(err)
        return
    plan = make_plan(graph, 3)
    assert sorted(plan.to_json()["services"]) == graph.names


@settings(max_examples=200, **FUZZ)
@given(document=DOCUMENTS, fmt=st.sampled_from(["json", "toml"]))
def test_hostile_graph_documents(tmp_path, document, fmt):
    path = tmp_path / f"graph.{fmt}"
    path.write_text(json.dumps(document) if fmt == "json" else to_toml(document))
    check_graph_file(path)


@settings(max_examples=150, **FUZZ)
@given(names=st.lists(NAMES, min_size=1, max_size=8, unique=True), data=st.data())
def test_random_and_cyclic_graphs(tmp_path, names, data):
    """Services after any others, cycles and self-loops included: reported, or planned."""
    services = [{"name": n, "duration": data.draw(st.floats(0, 10)), "after": data.draw(st.lists(
        st.sampled_from(names), max_size=3))} for n in names]
    path = tmp_path / "graph.json"
    path.write_text(json.dumps({"services": services}))
    check_graph_file(path)


@settings(max_examples=100, **FUZZ)
@given(text=JUNK_TEXT | st.binary(max_size=40), fmt=st.sampled_from(["json", "toml"]))
def test_junk_graph_files(tmp_path, text, fmt):
    path = tmp_path / f"graph.{fmt}"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    check_graph_file(path)


SAMPLE = Graph([synth("extract", 1.0, pool="db"), synth("load", 1.0, ["extract"])], {"db": 1})


def check_config(folder: Path) -> None:
    """The property: CritpathError naming the file, or a config the sample graph plans with."""
    try:
        cfg = load_config(folder=folder)
    except CritpathError as err:
        assert str(err).strip() and "critpath.toml" in str(err), repr(err)
        return
    make_plan(Graph(list(SAMPLE), {**SAMPLE.pools, **cfg.pools}), cfg.max_concurrency or cfg.workers or 8)


@settings(max_examples=200, **FUZZ)
@given(config=CONFIGS)
def test_hostile_config_files(tmp_path, config):
    (tmp_path / "critpath.toml").write_text(to_toml(config))
    check_config(tmp_path)


BIG = 10**400


@pytest.mark.parametrize("text", [
    f"timeout = {BIG}", f"retry_delay = {BIG}", f"time_scale = {BIG}", f"workers = {BIG}",
    f"max_concurrency = {BIG}", f"[pools]\ndb = {BIG}", "workers = " + "[" * 5000 + "]" * 5000,
    "workers = 1" + "0" * 5000,
], ids=["timeout", "retry_delay", "time_scale", "workers", "max_concurrency", "pool", "nesting", "digits"])
def test_config_beyond_what_a_number_or_the_parser_holds(tmp_path, text):
    (tmp_path / "critpath.toml").write_text(text + "\n")
    check_config(tmp_path)


CYCLE = {"services": [{"name": "a", "after": ["b"], "duration": 1}, {"name": "b", "after": ["a"], "duration": 1}]}


@pytest.mark.parametrize("files,needle", [
    ({"g.json": ""}, "graph file 'g.json' is empty"),
    ({"g.json": json.dumps(CYCLE)}, "cycle a -> b -> a"),
    ({"g.json": "[" * 100_000 + "]" * 100_000}, "g.json: nested too deeply to read"),
    ({"g.json": '{"services": [{"name": "☃", "duration": 1e999}]}'}, "'duration' must be a finite number"),
    ({"g.json": json.dumps({"services": [{"name": "a\u202eb", "duration": 1}]})}, "control characters"),
    ({"g.json": json.dumps(CYCLE), "critpath.toml": "workers = 'many'\n"}, "workers = 'many'"),
], ids=["empty", "cycle", "nested", "infinite", "bidi", "config"])
def test_cli_rejects_hostile_input_in_one_line(tmp_path, files, needle):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert_bad_input(critpath("plan", "--graph", "g.json", cwd=tmp_path), needle)


@pytest.mark.parametrize("args,config,needle", [
    pytest.param(("plan", "--pool", "db=²"), "", "--pool 'db=²'", id="superscript-pool-limit"),
    pytest.param(("plan", "--max-concurrency", str(BIG)), "", "'--max-concurrency'", id="huge-max-concurrency"),
    pytest.param(("plan",), f"max_concurrency = {BIG}", "max_concurrency = ", id="huge-config-number"),
    pytest.param(("plan",), "retry_delay = " + "[" * 5000 + "]" * 5000, "critpath.toml", id="nested-config"),
    pytest.param(("run", "--runner", "threads"), 'state_dir = "/dev/null/state"', "state_dir '/dev/null/state'",
                 id="unusable-state-dir"),
    pytest.param(("plan", "--max-concurrency", "0"), "", "'--max-concurrency': 0 is not in the range",
                 id="zero-max-concurrency"),
])
def test_cli_input_that_is_reported_in_one_line(tmp_path, args, config, needle):
    """Numbers past a float or the parser, an unusable state_dir and click's own checks all end
    like any other bad input: one line naming the key or option, exit 2."""
    graph_file(tmp_path, [{"name": "a", "duration": 0.01, "pool": "db"}], pools={"db": 1})
    (tmp_path / "critpath.toml").write_text(config + "\n")
    assert_bad_input(critpath(args[0], "--graph", "g.json", *args[1:], cwd=tmp_path), needle)


def _tree(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


NASTY_NAMES = ["../../etc/x", "/abs", "a/b", "..", ".", "~", "$HOME", "a\\b", "ünï ☃", "名前", "nul"]


def test_service_names_cannot_steer_a_path_out_of_the_state_folder(prefect_server, tmp_path):
    """critpath derives no file name from a service name (the ledger's run id is generated):
    such names run, and every file the run creates is inside the project's .critpath."""
    project = tmp_path / "one" / "two" / "project"  # '../../etc/x' from here stays inside tmp_path
    graph_file(project, [{"name": n, "duration": 0.01, **({"after": [NASTY_NAMES[i - 1]]} if i % 2 else {})}
                         for i, n in enumerate(NASTY_NAMES)])
    before, root_before = _tree(tmp_path), set(os.listdir("/"))
    proc = critpath("run", "--graph", "g.json", cwd=project, api_url=prefect_server)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {n: s["state"] for n, s in last_report(project)["services"].items()} == \
        dict.fromkeys(NASTY_NAMES, "completed")
    created = _tree(tmp_path) - before
    assert created and [p for p in created if not p.is_relative_to(project / ".critpath")] == []
    assert set(os.listdir("/")) - root_before == set()
