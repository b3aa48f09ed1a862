"""Reliability, resume never repeats what finished (issue 10 §3): chains of resumes, with
selections and with kills at random moments, hand-overs included.

* ``run`` (a completes, b fails, c completes), ``run --resume --select b``, ``run --resume``:
  a resumed run's ledger carries every completion of the run it resumes, whatever it selected,
  so the last resume runs nothing;
* a service calling ``os._exit`` on threads takes critpath down with it: ``--resume`` says which
  services were in flight then;
* a seeded chaos chain: 300 short services in chains and fan-outs on threads, ``critpath run``
  SIGKILLed at random moments (as its run folder appears, or once its ledger has a random
  number of lines), then ``--resume`` until one finishes. Every service completes; none that
  had completed before a kill starts again; only those in flight at a kill start twice.

Every service body appends a line to a file of its own when it starts (``faults.mark``): the
line count is how many times it started, whatever happened to the process.

CLI tests run ``python -m orchestrator`` in a project folder of their own, against the session's
Prefect server. Nothing asserts a duration; waits are bounded so that a broken promise fails a
test instead of hanging it.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import psutil
import pytest

from orchestrator.execution.ledger import read_run
from tests.helpers.graphs import FAULTS, SERVICES
from tests.helpers.processes import Cli, assert_bad_input, critpath, wait_until
from tests.helpers.projects import graph_file, last_report

RUN = ("run", "--graph", "g.json", "--runner", "threads")


def _mark(project: Path, name: str, seconds: float = 0.01, **fields) -> dict:
    return {"name": name, "call": f"{FAULTS}:mark",
            "params": {"path": str(project / "starts" / name), "seconds": seconds}, **fields}


def _starts(project: Path, names) -> dict[str, int]:
    folder = project / "starts"
    return {n: len((folder / n).read_text().split()) if (folder / n).exists() else 0 for n in names}


def _completions(state: Path, run_id: str) -> list[str]:
    """The services a run completed itself (not those carried over), in order; a line still
    being written is not one yet."""
    path = state / "runs" / run_id / "ledger.jsonl"
    names = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if "service" in record and not record.get("resumed"):
            names.append(record["service"])
    return names


def _left_running(project: Path) -> list:
    """Processes still running in the project folder (critpath or anything it started)."""
    left = []
    for proc in psutil.process_iter(["cwd", "status"]):
        if proc.info["cwd"] == str(project) and proc.info["status"] != psutil.STATUS_ZOMBIE:
            left.append(proc)
    return left


def test_a_resume_of_a_selection_carries_every_completion_over(prefect_server, tmp_path):
    (tmp_path / "starts").mkdir()
    graph_file(tmp_path, [_mark(tmp_path, "a"),
                          {"name": "b", "after": ["a"], "retries": 0, "call": f"{SERVICES}:flaky",
                           "params": {"counter": str(tmp_path / "b.calls"), "failures": 1}},
                          _mark(tmp_path, "c", after=["a"])])
    state = tmp_path / ".critpath"
    first = critpath(*RUN, cwd=tmp_path, api_url=prefect_server)
    assert first.returncode == 1, first.stdout + first.stderr
    first_id = (state / "last-run-id").read_text().strip()
    second = critpath(*RUN, "--resume", "--select", "b", cwd=tmp_path, api_url=prefect_server)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"critpath: resuming run {first_id}: 0 of 1 services already completed" in second.stderr
    report = last_report(tmp_path)
    assert ({n: s["state"] for n, s in report["services"].items()}, report["resumed"]) == ({"b": "completed"}, [])
    second_id = report["run_id"]
    assert read_run(state, second_id).done == {"a", "b", "c"}, "a and c are carried over though not selected"
    third = critpath(*RUN, "--resume", cwd=tmp_path, api_url=prefect_server)
    assert third.returncode == 0, third.stdout + third.stderr
    assert f"critpath: resuming run {second_id}: 3 of 3 services already completed" in third.stderr
    report = last_report(tmp_path)
    assert (report["services"], report["resumed"], report["resumed_from"]) == ({}, ["a", "b", "c"], second_id)
    assert _starts(tmp_path, "ac") == {"a": 1, "c": 1}
    assert (tmp_path / "b.calls").read_text() == "2"
    for proc in (first, second, third):
        assert "ended abruptly" not in proc.stderr + proc.stdout, "each run ended normally"


def test_resume_names_what_was_in_flight_when_a_service_took_critpath_down(prefect_server, tmp_path):
    """``die`` calls ``os._exit(3)`` on the threads runner while ``slow`` is in flight (``first``,
    its upstream, completes only once ``slow`` has started)."""
    (tmp_path / "starts").mkdir()
    graph_file(tmp_path, [{"name": "first", "call": f"{SERVICES}:rendezvous",
                           "params": {"me": str(tmp_path / "first.flag"), "other": str(tmp_path / "starts" / "slow"),
                                      "seconds": 60}},
                          {"name": "die", "after": ["first"], "call": "os:_exit", "params": {"status": 3}},
                          _mark(tmp_path, "slow", 3), _mark(tmp_path, "later", after=["die"])])
    state = tmp_path / ".critpath"
    crashed = critpath(*RUN, "--workers", "2", cwd=tmp_path, api_url=prefect_server)
    assert crashed.returncode == 3, crashed.stdout + crashed.stderr
    crashed_id = (state / "last-run-id").read_text().strip()
    assert read_run(state, None).in_flight == ("die", "slow")
    resumed = critpath(*RUN, "--resume", "--select", "slow,later", cwd=tmp_path, api_url=prefect_server,
                       timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "critpath: the last run ended abruptly while these were in flight: die, slow\n" in resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert f"run {crashed_id} had ended abruptly with 2 in flight (run again here if selected): die, slow" \
        in resumed.stdout
    assert last_report(tmp_path)["resumed_in_flight"] == ["die", "slow"]
    assert read_run(state, None).in_flight is None, "the resume itself ended normally"
    assert read_run(state, crashed_id).done == {"first"}
    assert _starts(tmp_path, ["slow", "later"]) == {"slow": 2, "later": 1}
    assert not _left_running(tmp_path)


@pytest.mark.parametrize("content", [b"\xff\xfe\x00\x01", b"\x80" * 33])
def test_a_last_run_id_that_is_not_utf8_is_one_line(tmp_path, content):
    graph_file(tmp_path, [{"name": "a", "duration": 0.01}])
    (tmp_path / ".critpath").mkdir()
    (tmp_path / ".critpath" / "last-run-id").write_bytes(content)
    proc = critpath(*RUN, "--resume", cwd=tmp_path)
    assert_bad_input(proc, "'.critpath/last-run-id' is not UTF-8 text", "critpath run --resume RUN_ID")
    assert len([ln for ln in proc.stderr.splitlines() if ln.strip()]) == 1, proc.stderr
    assert not (tmp_path / ".critpath" / "runs").exists(), "nothing may run"


# -- the chaos chain ---------------------------------------------------------------------------

SEED = 1010
KILLS = 5
CHAINS, FAN = 5, 30  # 5 chains of 30 services, each with a fan-out of 30 from its 10th: 300 services


def _chaos_graph(project: Path, rng: random.Random) -> list[str]:
    services = []
    for k in range(CHAINS):
        for j in range(FAN):
            after = [f"c{k}_{j - 1:02d}"] if j else []
            services.append(_mark(project, f"c{k}_{j:02d}", rng.uniform(0.01, 0.05), after=after))
        for j in range(FAN):
            services.append(_mark(project, f"f{k}_{j:02d}", rng.uniform(0.01, 0.05), after=[f"c{k}_09"]))
    graph_file(project, services)
    return [s["name"] for s in services]


def _run_folders(state: Path) -> set[str]:
    return {p.name for p in (state / "runs").iterdir()} if (state / "runs").is_dir() else set()


def _kill_once(cli: Cli, state: Path, before: set[str], target: int) -> None:
    """SIGKILL to ``cli``'s process group once a run folder not in ``before`` exists and its
    ledger has ``target`` completions of its own (0: as soon as the folder appears)."""
    def far_enough():
        assert cli.proc.poll() is None, f"critpath ended before the kill:\n{cli.stdout}{cli.stderr}"
        new = _run_folders(state) - before
        return new and len(_completions(state, next(iter(new)))) >= target

    wait_until(far_enough, 120, f"{target} completions in the new run's ledger")
    cli.kill()


def test_seeded_kills_across_a_chain_of_resumes_never_repeat_a_finished_service(prefect_server, tmp_path):
    rng = random.Random(SEED)
    (tmp_path / "starts").mkdir()
    names = _chaos_graph(tmp_path, rng)
    state = tmp_path / ".critpath"
    args = (*RUN, "--workers", "8")
    # per run: its id, whether it was killed, the starts after it, its stderr, and the record of
    # the run last-run-id named after it (the one the next --resume resumes)
    rounds = []
    for round_ in range(KILLS + 1):
        before = _run_folders(state)
        resume = ("--resume",) if round_ else ()
        if round_ == KILLS:  # the last one is left to finish
            proc = critpath(*args, *resume, cwd=tmp_path, api_url=prefect_server, timeout=120)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            killed, err = False, proc.stderr
        else:
            done = read_run(state, None).done if round_ else set()
            # as the run folder appears (in the hand-over), or once N more completions are in
            most = min(len(names) - len(done) - 1, 40)
            target = 0 if most < 1 or (round_ and rng.random() < 0.3) else rng.randint(1, most)
            with Cli(*args, *resume, cwd=tmp_path, api_url=prefect_server) as cli:
                _kill_once(cli, state, before, target)
            killed, err = True, cli.stderr
        (run_id,) = _run_folders(state) - before
        rounds.append((run_id, killed, _starts(tmp_path, names), err, read_run(state, None)))
        assert not _left_running(tmp_path), f"round {round_}"

    # every service completed, and the last run's ledger (carried over included) says so
    assert rounds[-1][4].run_id == rounds[-1][0]
    assert rounds[-1][4].done == set(names)
    report = last_report(tmp_path)
    assert sorted([*report["services"], *report["resumed"]]) == sorted(names)
    assert all(s["state"] == "completed" for s in report["services"].values())

    previous = dict.fromkeys(names, 0)
    done_so_far: set[str] = set()
    repeats_allowed = dict.fromkeys(names, 0)
    for i, (run_id, killed, starts, _, pointed) in enumerate(rounds):
        started = {n for n in names if starts[n] > previous[n]}
        assert all(starts[n] - previous[n] <= 1 for n in names), f"run {i}: a service started twice"
        assert not started & done_so_far, f"run {i} started services that had completed: {started & done_so_far}"
        mine = set(_completions(state, run_id))
        assert mine <= started
        done_so_far |= mine
        # the hand-over: whatever the moment of the kill, last-run-id names a ledger with everything
        assert pointed.done == done_so_far, f"run {i}: last-run-id names a ledger missing completions"
        if killed:
            in_flight = started - mine
            assert pointed.run_id == run_id or not started, f"run {i}: started work before it was named"
            if pointed.run_id == run_id:
                assert in_flight <= set(pointed.in_flight), f"run {i}: in flight at the kill, not in its journal"
            for n in in_flight:
                repeats_allowed[n] += 1
            said = rounds[i + 1][3]
            if pointed.in_flight:
                assert "critpath: the last run ended abruptly while these were in flight: " \
                    + ", ".join(pointed.in_flight) + "\n" in said, said
            elif pointed.in_flight == ():
                assert "critpath: the last run ended abruptly, with nothing in flight" in said, said
        else:
            assert pointed.in_flight is None
        previous = starts
    final = rounds[-1][2]
    assert all(final[n] >= 1 for n in names)
    assert {n: (final[n] - 1, repeats_allowed[n]) for n in names if final[n] - 1 > repeats_allowed[n]} == {}
    assert sum(repeats_allowed.values()) >= 1, "no kill found a service in flight: the test proves little"
