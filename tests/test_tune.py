"""``critpath tune``, ``history`` and ``plan``'s prediction, as a user meets them (issue 11).

History is either recorded by real refreshes (the end-to-end test) or written row by row through
the store's own API (recorded data in, a deterministic recommendation out)."""
from __future__ import annotations

import json

import pytest

from orchestrator.inputs.history import AttemptRow, History
from tests.helpers.processes import assert_bad_input, critpath

WORK = {"services": [{"name": f"w{i}", "duration": 0.4, "kind": "work"} for i in range(6)]}
POOLED = {"services": [{"name": f"p{i}", "call": "json:dumps", "params": {"obj": i}, "pool": "wh"} for i in range(4)],
          "pools": {"wh": 1}}


def _project(tmp_path, graph=POOLED, toml: str | None = None):
    (tmp_path / "graph.json").write_text(json.dumps(graph))
    if toml is not None:
        (tmp_path / "critpath.toml").write_text(toml)
    return tmp_path


def _recorded(folder, names, runs=2, seconds=1.0, cpu=0.05):
    """``runs`` recorded runs in which each service took ``seconds``, one after another."""
    with History(folder / ".critpath") as h:
        for r in range(runs):
            for k, name in enumerate(names):
                start = 1000.0 * r + k * seconds
                h.record(AttemptRow(service=name, run_id=f"run{r}", runner="threads", attempt=1,
                                    outcome="completed", start=start, end=start + seconds, cpu_s=cpu * seconds,
                                    gil_s=cpu * seconds))


def test_too_little_history_says_how_many_runs_and_how_to_get_them(tmp_path):
    project = _project(tmp_path)
    _recorded(project, ["p0", "p1", "p2", "p3"], runs=1)
    assert_bad_input(critpath("tune", "--graph", "graph.json", cwd=project), "too few runs of 4 service(s)",
                     "needs 2 successful runs of each, 1 more", "--warmup 1")


@pytest.mark.parametrize("args, needle", [
    (["--tolerance", "0"], "--tolerance"), (["--tolerance", "1"], "--tolerance"), (["--tolerance", "2"], "--tolerance"),
    (["--max", "0"], "--max"), (["--pool", "nosuch=2"], "no service of this graph uses pool 'nosuch'"),
])
def test_bad_options_are_one_line(tmp_path, args, needle):
    project = _project(tmp_path)
    _recorded(project, ["p0", "p1", "p2", "p3"])
    assert_bad_input(critpath("tune", "--graph", "graph.json", *args, cwd=project), needle)


def test_a_history_file_that_is_not_critpaths_is_refused_and_kept(tmp_path):
    project = _project(tmp_path)
    (project / ".critpath").mkdir()
    (project / ".critpath" / "history.sqlite").write_bytes(b"not a database" * 50)
    for cmd in (["tune"], ["history"], ["run"]):
        assert_bad_input(critpath(*cmd, "--graph", "graph.json", cwd=project), "not critpath's history",
                         "move it aside")
    assert (project / ".critpath" / "history.sqlite").read_bytes() == b"not a database" * 50


def test_recommendation_and_write_keep_the_files_comments(tmp_path):
    """Four 1 s services in a pool of 1, mostly waiting (5% CPU): the pool is what limits them.
    tune widens it (to 2, the most it tries from 1), and --write stores that with the global limit,
    leaving the file's own comments and keys alone."""
    toml = '# our refresh\nrunner = "threads"  # keep it simple\n\n[pools]\nwh = 1  # the warehouse\n'
    project = _project(tmp_path, toml=toml)
    _recorded(project, ["p0", "p1", "p2", "p3"])
    proc = critpath("tune", "--graph", "graph.json", "--json", "--write", cwd=project)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert set(result) >= {"current", "recommended", "candidates", "verified"}
    assert result["recommended"]["pools"] == {"wh": 2}
    assert result["recommended"]["predicted_makespan_s"] == pytest.approx(2.0, rel=0.05)
    assert result["current"]["predicted_makespan_s"] == pytest.approx(4.0, rel=0.05)
    assert all({"max_concurrency", "pools", "cpu_aware", "predicted_makespan_s"} <= set(c)
               for c in result["candidates"])
    text = (project / "critpath.toml").read_text()
    assert "# our refresh" in text and "# keep it simple" in text and "# the warehouse" in text
    assert "wh = 2" in text and f"max_concurrency = {result['recommended']['max_concurrency']}" in text
    assert "updated critpath.toml" in proc.stderr


def test_write_without_a_config_creates_one_and_says_so(tmp_path):
    project = _project(tmp_path)
    _recorded(project, ["p0", "p1", "p2", "p3"])
    proc = critpath("tune", "--graph", "graph.json", "--write", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert "created critpath.toml" in proc.stderr and "plot: " in proc.stdout
    assert "max_concurrency" in (project / "critpath.toml").read_text()
    assert (project / ".critpath" / "tune.html").read_text().startswith("<!doctype html>")


def test_history_and_plan_name_their_sources(tmp_path):
    project = _project(tmp_path)
    _recorded(project, ["p0", "p1"], runs=3, seconds=2.0)
    data = json.loads(critpath("history", "--graph", "graph.json", "--json", cwd=project).stdout)
    assert data["services"]["p0"] == {**data["services"]["p0"], "runs": 3, "successes": 3, "p50_s": 2.0,
                                      "estimate_source": "history"}
    assert data["services"]["p2"]["estimate_source"] == "default" and data["services"]["p2"]["runs"] == 0
    plan = json.loads(critpath("plan", "--graph", "graph.json", "--json", cwd=project).stdout)
    assert (plan["services"]["p0"]["estimate_source"], plan["services"]["p0"]["history_runs"]) == ("history", 3)
    assert plan["services"]["p3"]["estimate_source"] == "default"
    assert plan["predicted_makespan_s"] > 0 and plan["cores"] > 0
    bare = json.loads(critpath("plan", "--graph", "graph.json", "--json", "--no-history", cwd=project).stdout)
    assert {s["estimate_source"] for s in bare["services"].values()} == {"default"}


def test_tune_end_to_end_on_processes(prefect_server, tmp_path):
    """Six services that each do 0.4 s of CPU work, on the processes runner: after two warm-up runs,
    tune recommends a limit and verifies it against the current one (1 slot): the recommended
    setting is the faster of the two when run for real."""
    project = _project(tmp_path, WORK)
    proc = critpath("tune", "--graph", "graph.json", "--runner", "processes", "--max-concurrency", "1",
                    "--warmup", "2", "--verify", "--json", cwd=project, api_url=prefect_server, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    rec, cur = result["recommended"], result["current"]
    assert cur["max_concurrency"] == 1
    if rec["max_concurrency"] == 1:
        # another process kept a core busy while it ran (under xdist, the other worker's tests): the
        # model, which counts that load, saw no core for a second slot, so 2 is predicted no faster
        # (within the tolerance) and the current setting, verified alone, is the recommendation
        two = [c for c in result["candidates"] if c["max_concurrency"] == 2 and not c["cpu_aware"]]
        assert two and min(c["predicted_makespan_s"] for c in two) >= rec["predicted_makespan_s"] * (1 - 0.02)
        assert [v["which"] for v in result["verified"]] == ["recommended"]
        return
    measured = {v["which"]: v["measured_makespan_s"] for v in result["verified"]}
    assert set(measured) == {"recommended", "current"}
    assert measured["recommended"] <= min(measured.values()) * 1.05
