"""The ``critpath`` command as a user meets it, in a real subprocess.

Bad input: one clear line on stderr naming the problem, exit status 2, no
traceback. A clean run: exit 0, no traceback, no error-level log line. A run with
a failed service: exit 1 and a summary naming what failed and what was skipped.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers.processes import assert_bad_input

ROOT = Path(__file__).resolve().parents[1]


def critpath(*args, cwd, timeout=180, env=None):
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", **(env or {})}
    full_env.pop("PREFECT_API_URL", None)
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=full_env)


@pytest.fixture
def project(tmp_path):
    """A project folder with a small graph file::

        a -> b -> d
        a -> c
    """
    graph = {"services": [
        {"name": "a", "duration": 0.05, "tags": ["ingest"]},
        {"name": "b", "after": ["a"], "duration": 0.05, "pool": "warehouse"},
        {"name": "c", "after": ["a"], "duration": 0.05, "pool": "warehouse"},
        {"name": "d", "after": ["b"], "duration": 0.05}],
        "pools": {"warehouse": 1}}
    (tmp_path / "graph.json").write_text(json.dumps(graph))
    return tmp_path


def test_unknown_runner(project):
    assert_bad_input(critpath("run", "--graph", "graph.json", "--runner", "dusk", cwd=project),
                     "unknown runner 'dusk'", "did you mean 'dask'")


@pytest.mark.parametrize("runner,address", [("dask", "tcp://127.0.0.1:9"), ("ray", "127.0.0.1:9")])
def test_address_nobody_answers(project, runner, address):
    proc = critpath("run", "--graph", "graph.json", "--runner", runner, "--address", address, cwd=project,
                    timeout=60)
    assert_bad_input(proc, address, "check that the cluster is running")


@pytest.mark.parametrize("select,needle", [("bb", "unknown service 'bb' (did you mean 'b'?)"),
                                           ("tag:ingst", "no service has tag 'ingst' (did you mean 'ingest'?)")])
def test_unknown_selection(project, select, needle):
    assert_bad_input(critpath("run", "--graph", "graph.json", "--select", select, cwd=project), needle)


def test_config_that_does_not_parse(project):
    (project / "critpath.toml").write_text('runner = "dask"\nworkers = \n')
    assert_bad_input(critpath("plan", "--graph", "graph.json", cwd=project), "critpath.toml", "line 2")


def test_config_unknown_key_suggests(project):
    (project / "critpath.toml").write_text('runer = "dask"\n')
    assert_bad_input(critpath("plan", "--graph", "graph.json", cwd=project), "unknown key 'runer'",
                     "did you mean 'runner'")


def test_module_that_does_not_import(project):
    assert_bad_input(critpath("plan", "--module", "no_such_pkg.services", cwd=project), "no_such_pkg")


def test_graph_problems_reported_together(project):
    bad = {"services": [{"name": "x", "after": ["y"], "duration": 1},
                        {"name": "y", "after": ["x"], "duration": 1},
                        {"name": "z", "after": ["xx"], "duration": 1}]}
    (project / "bad.json").write_text(json.dumps(bad))
    proc = critpath("run", "--graph", "bad.json", cwd=project)
    assert_bad_input(proc, "2 problems", "cycle x -> y -> x", "unknown service 'xx'")
    assert not (project / ".critpath").exists(), "nothing may run on bad input"


def test_plan_json_keys(project):
    proc = critpath("plan", "--graph", "graph.json", "--json", "--max-concurrency", "2", cwd=project)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    for key in ("services", "edges", "critical_path", "critical_path_s", "total_work_s", "lower_bound_s",
                "simulated_makespan_s", "max_concurrency"):
        assert key in plan
    assert plan["critical_path"] == ["a", "b", "d"]
    # pool warehouse=1 serialises b and c: the bound counts the pool
    assert plan["pool_bounds_s"] == {"warehouse": pytest.approx(0.1)}


def test_config_and_flags_precedence(project):
    (project / "critpath.toml").write_text(textwrap.dedent("""
        graph = "graph.json"
        max_concurrency = 3
        [pools]
        warehouse = 2
    """))
    plan = json.loads(critpath("plan", "--json", cwd=project).stdout)
    assert plan["max_concurrency"] == 3 and plan["pools"] == {"warehouse": 2}
    plan = json.loads(critpath("plan", "--json", "--pool", "warehouse=5", "--max-concurrency", "4",
                               cwd=project).stdout)
    assert plan["max_concurrency"] == 4 and plan["pools"] == {"warehouse": 5}


def test_pyproject_tool_table(project):
    (project / "pyproject.toml").write_text('[tool.critpath]\ngraph = "graph.json"\nmax_concurrency = 5\n')
    plan = json.loads(critpath("plan", "--json", cwd=project).stdout)
    assert plan["max_concurrency"] == 5


def _no_noise(proc):
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    assert "| ERROR" not in out and "ERROR   |" not in out, out


def test_clean_run_exit_0_with_report_and_timeline(project):
    proc = critpath("run", "--graph", "graph.json", "--json-report", "out/run.json", cwd=project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _no_noise(proc)
    report = json.loads((project / "out/run.json").read_text())
    for key in ("makespan_s", "critical_path_s", "total_work_s", "lower_bound_s", "max_concurrency", "runner",
                "flow_run_id", "services"):
        assert key in report
    assert {n: s["state"] for n, s in report["services"].items()} == dict.fromkeys("abcd", "completed")
    for s in report["services"].values():
        assert set(s) >= {"state", "start", "end", "attempts", "worker"} and s["start"] <= s["end"]
    assert (project / "out/run.html").exists()
    again = critpath("report", "out/run.json", cwd=project)
    assert again.returncode == 0 and "4/4 services completed" in again.stdout


def test_failed_service_exit_1_names_failed_and_skipped(project):
    graph = json.loads((project / "graph.json").read_text())
    graph["services"][1] = {"name": "b", "after": ["a"], "call": "json:loads", "params": {"s": "{"}}
    (project / "graph.json").write_text(json.dumps(graph))
    proc = critpath("run", "--graph", "graph.json", cwd=project)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAILED  b after 1 attempt(s): JSONDecodeError" in proc.stdout
    assert "SKIPPED 1 downstream of a failure: d" in proc.stdout
    report = json.loads((project / ".critpath/last-run.json").read_text())
    assert report["failed"] == ["b"] and report["skipped"] == ["d"]
    assert report["services"]["c"]["state"] == "completed"


@pytest.mark.ray
def test_a_run_on_a_local_ray_instance_prints_none_of_rays_notices(project):
    """Ray 2.60 turns token authentication on for every new local instance and says so at
    WARNING level; critpath's instance is private, so a normal run shows nothing of it."""
    proc = critpath("run", "--graph", "graph.json", "--runner", "ray", "--no-progress", cwd=project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _no_noise(proc)
    assert "WARNING" not in proc.stderr and "Token authentication" not in proc.stderr, proc.stderr
