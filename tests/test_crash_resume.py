"""Reliability, an orchestrator crash: ``critpath run`` SIGKILLed mid-refresh, then resumed.

    a -> b, c -> d -> g;  e -> f -> g;  h       each appends a line (its pid), sleeps 0.5 s

The lines each body appends count how often each service started, whatever happened to the
process that ran it; the ledger says what had completed.

CLI tests run ``python -m orchestrator`` in a project folder of their own.

Nothing here mocks Prefect, Dask or Ray; nothing asserts a duration, only states, counts and
order. Waits are bounded so that a broken promise fails a test instead of hanging it.
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.helpers.graphs import FAULTS
from tests.helpers.processes import Cli, assert_bad_input, critpath, gone, wait_until
from tests.helpers.projects import graph_file, last_report

CRASH_GRAPH = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "e": [], "f": ["e"], "g": ["d", "f"], "h": []}
CRASH_ARGS = ("run", "--graph", "g.json", "--runner", "processes", "--workers", "2")


def _ledger(state: Path, run_id: str) -> list[str]:
    """The services in a run's ledger; a line still being written is not one yet."""
    path = state / "runs" / run_id / "ledger.jsonl"
    names = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            names.append(json.loads(line)["service"])
        except ValueError:
            pass
    return names


def _starts(project: Path) -> dict[str, int]:
    """How many times each service started: the lines its body appended (``faults.mark``)."""
    return {n: len((project / f"{n}.runs").read_text().split()) if (project / f"{n}.runs").exists() else 0
            for n in CRASH_GRAPH}


def _ledger_once_two_completed(state: Path) -> list[str] | None:
    marker = state / "last-run-id"
    done = _ledger(state, marker.read_text().strip()) if marker.exists() else []
    return done if len(done) >= 2 else None


@pytest.fixture(scope="module")
def crashed(prefect_server, tmp_path_factory):
    """``critpath run`` SIGKILLed (its whole process group: the CLI and its workers) once two
    services are in the ledger; then resumed three times: ``--resume`` (the last run),
    ``--resume <crashed run>`` again, ``--resume <the first resume>`` (all done)."""
    project = tmp_path_factory.mktemp("crash")
    state = project / ".critpath"
    graph_file(project, [{"name": n, "after": ups, "call": f"{FAULTS}:mark",
                          "params": {"path": str(project / f"{n}.runs"), "seconds": 0.5}}
                         for n, ups in CRASH_GRAPH.items()])
    with Cli(*CRASH_ARGS, cwd=project, api_url=prefect_server) as cli:
        wait_until(lambda: _ledger_once_two_completed(state), 120, "two completed services in the ledger")
        cli.kill()
    run_id = (state / "last-run-id").read_text().strip()
    at_crash = _starts(project)
    workers = {int(pid) for n in CRASH_GRAPH if (project / f"{n}.runs").exists()
               for pid in (project / f"{n}.runs").read_text().split()}
    wait_until(lambda: all(gone(pid) for pid in workers), 30, "the killed workers to be gone")
    out = SimpleNamespace(project=project, run_id=run_id, ledger=_ledger(state, run_id), at_crash=at_crash,
                          stages=[])
    for resume in ((), (run_id,), None):
        if resume is None:  # the first resume completed everything: resuming it runs nothing
            resume = (out.stages[0].report["run_id"],)
        proc = critpath(*CRASH_ARGS, "--resume", *resume, cwd=project, api_url=prefect_server)
        out.stages.append(SimpleNamespace(proc=proc, report=last_report(project), starts=_starts(project)))
    return out


def test_the_crash_came_mid_refresh(crashed):
    assert 2 <= len(crashed.ledger) < len(CRASH_GRAPH), crashed.ledger
    assert len(set(crashed.ledger)) == len(crashed.ledger)


def test_services_completed_before_the_crash_never_run_again(crashed):
    for stage in [crashed.at_crash, *(s.starts for s in crashed.stages)]:
        assert {n: stage[n] for n in crashed.ledger} == dict.fromkeys(crashed.ledger, 1)


def test_resume_runs_exactly_what_had_not_completed(crashed):
    """A service in flight at the kill had started (its line is there) but is not in the
    ledger: it runs again, so it starts twice in all; every other service starts once."""
    first = crashed.stages[0]
    assert first.proc.returncode == 0, first.proc.stdout + first.proc.stderr
    rest = sorted(set(CRASH_GRAPH) - set(crashed.ledger))
    assert sorted(first.report["services"]) == rest
    assert {n: (s["state"], s["attempts"]) for n, s in first.report["services"].items()} == \
        dict.fromkeys(rest, ("completed", 1))
    assert first.report["resumed"] == sorted(crashed.ledger)
    assert (first.report["resumed_from"], first.report["failed"]) == (crashed.run_id, [])
    assert {n: first.starts[n] - crashed.at_crash[n] for n in rest} == dict.fromkeys(rest, 1)
    assert set(crashed.at_crash[n] for n in rest) <= {0, 1}


def test_resume_of_an_explicit_run_id(crashed):
    again = crashed.stages[1]
    assert again.proc.returncode == 0, again.proc.stdout + again.proc.stderr
    rest = sorted(set(CRASH_GRAPH) - set(crashed.ledger))
    assert (again.report["resumed_from"], again.report["resumed"]) == (crashed.run_id, sorted(crashed.ledger))
    assert sorted(again.report["services"]) == rest
    before = crashed.stages[0].starts
    assert {n: again.starts[n] - before[n] for n in CRASH_GRAPH} == {n: int(n in rest) for n in CRASH_GRAPH}


def test_resuming_a_run_that_completed_everything_runs_nothing(crashed):
    last = crashed.stages[2]
    assert last.proc.returncode == 0, last.proc.stdout + last.proc.stderr
    assert (last.report["services"], last.report["resumed"]) == ({}, sorted(CRASH_GRAPH))
    assert last.starts == crashed.stages[1].starts


@pytest.mark.parametrize("resume,needle", [
    ((), "--resume: no earlier run in '.critpath'; run 'critpath run' first"),
    (("zzz",), "--resume 'zzz': not a run id"),
    (("../../etc/passwd",), "--resume '../../etc/passwd': not a run id"),
    (("0" * 32,), f"--resume '{'0' * 32}': no ledger at"),
])
def test_resume_with_nothing_to_resume_is_bad_input(tmp_path, resume, needle):
    graph_file(tmp_path, [{"name": "a", "duration": 0.01}])
    assert_bad_input(critpath("run", "--graph", "g.json", "--resume", *resume, cwd=tmp_path), needle)
    assert not (tmp_path / ".critpath" / "runs").exists(), "nothing may run"
