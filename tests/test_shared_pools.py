"""Issue 13 §2: pools shared across refreshes, on a real Prefect server (``--shared-pools``).

Two ``critpath run`` processes share the pool ``wh`` (limit 2) through the server's global
concurrency limit ``critpath-wh``:

* the first holds both slots (two services that wait for a file the test writes), and the
  second, started meanwhile, asks and is refused (it says so, once). Released, the first
  finishes; the second then runs. Their services' recorded intervals never put more than 2 in
  the pool at once, the second's report says how long it waited, and its summary says the
  shared pool cost time;
* a refresh killed with SIGKILL while holding the only slot of ``held`` gives it back only
  through its lease expiring (60 s, the server's minimum, and a repossessor loop, 1 s on the
  test server): the next refresh completes after that, having waited. Its config says 3,
  the server says 1: the server's limit wins, and it says so.

Without a Prefect server to share through, ``--shared-pools`` is one line, exit 2.
Nothing asserts a duration; timeouts only bound the waits.
"""
from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.helpers.processes import Cli, assert_bad_input, critpath, read_pid
from tests.helpers.projects import graph_file, last_report

FAULTS = "tests.helpers.faults"


def _hold(folder: Path, name: str, release: Path | None, seconds: float = 120) -> dict:
    return {"name": name, "pool": None, "call": f"{FAULTS}:hang",
            "params": {"pidfile": str(folder / f"{name}.pid"), "seconds": seconds,
                       **({"release": str(release)} if release else {})}}


def _project(folder: Path, services: list[dict], pool: str, limit: int) -> Path:
    for s in services:
        s["pool"] = s.get("pool") or pool
    graph_file(folder, services)
    (folder / "critpath.toml").write_text(f'graph = "g.json"\nshared_pools = true\n[pools]\n{pool} = {limit}\n')
    return folder


def _limit(url: str, name: str):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: url}), get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(name)


def _most_at_once(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])  # an end before a start
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def _finish(cli: Cli, timeout: float = 240) -> int:
    code = cli.wait(timeout)
    if code is None:
        cli.signal_group(signal.SIGKILL)
        cli.wait(30)
        raise AssertionError(f"critpath still running after {timeout:g} s:\n{cli.stdout}\n{cli.stderr}")
    return code


@pytest.fixture(scope="module")
def killed_holder(prefect_server, tmp_path_factory):
    """A refresh killed with SIGKILL while it held the only slot of ``held``, and the refresh
    started right after it (its config says 3 slots), which must wait for that slot. Module-scoped
    and asked for by the first test too, so that the dead lease (60 s) runs out while that test
    runs; (the later refresh's folder, its Cli)."""
    folder = tmp_path_factory.mktemp("dead")
    _project(folder, [_hold(folder, "dead_hold", None, seconds=600)], "held", 1)
    a = Cli("run", cwd=folder, api_url=prefect_server)
    try:
        read_pid(folder / "dead_hold.pid")
        assert _limit(prefect_server, "critpath-held").active_slots == 1
    finally:
        a.signal_group(signal.SIGKILL)  # no chance to give anything back
        a.wait(30)
    later = _project(tmp_path_factory.mktemp("later"), [{"name": "later_a", "duration": 0.1}], "held", 3)
    cli = Cli("run", cwd=later, api_url=prefect_server)
    try:
        yield later, cli
    finally:
        if cli.wait(0) is None:
            cli.signal_group(signal.SIGKILL)
            cli.wait(30)


def test_two_refreshes_never_exceed_the_shared_limit_and_the_later_one_says_it_waited(prefect_server, tmp_path,
                                                                                      killed_holder):
    release = tmp_path / "release"
    first = _project(tmp_path / "first", [_hold(tmp_path / "first", "first_a", release),
                                          _hold(tmp_path / "first", "first_b", release),
                                          {"name": "first_c", "duration": 0.2}], "wh", 2)
    second = _project(tmp_path / "second", [{"name": "second_a", "duration": 0.3},
                                            {"name": "second_b", "duration": 0.3},
                                            {"name": "second_c", "duration": 0.3, "after": ["second_a"]}], "wh", 2)
    a = Cli("run", cwd=first, api_url=prefect_server)
    b = None
    try:
        read_pid(first / "first_a.pid")
        read_pid(first / "first_b.pid")  # both slots of critpath-wh are the first refresh's now
        assert _limit(prefect_server, "critpath-wh").active_slots == 2
        b = Cli("run", cwd=second, api_url=prefect_server)
        b.wait_for_output("shared pool 'wh': every slot of critpath-wh is held by other refreshes", 120)
        release.touch()
        assert _finish(a) == 0, a.stdout + a.stderr
        assert _finish(b) == 0, b.stdout + b.stderr
    finally:
        release.touch()
        for cli in (a, b):
            if cli is not None and cli.wait(0) is None:
                cli.signal_group(signal.SIGKILL)
                cli.wait(30)
    ra, rb = last_report(first), last_report(second)
    assert ra["shared_pools"] == rb["shared_pools"] == {"wh": 2}
    pooled = [(s["start"], s["end"]) for r in (ra, rb) for s in r["services"].values()]
    assert len(pooled) == 6 and _most_at_once(pooled) <= 2
    # the first refresh took both slots before the second asked: its holders never waited. Its
    # first_c may: once a slot is given back, the second refresh, asking every 0.1-2 s, can take it
    # before first_c asks (seen in CI); who gets a freed slot first is not a promise
    assert ra["services"]["first_a"]["shared_wait_s"] == ra["services"]["first_b"]["shared_wait_s"] == 0
    assert rb["shared_wait_s"] > 0 and rb["services"]["second_a"]["shared_wait_s"] > 0
    assert "SHARED POOLS cost time (wh = 2)" in b.stdout, b.stdout
    assert "Traceback" not in a.stderr + b.stderr
    assert _limit(prefect_server, "critpath-wh").active_slots == 0


def test_a_killed_refresh_gives_its_slots_back_when_its_leases_expire(prefect_server, killed_holder):
    later, cli = killed_holder
    assert _finish(cli) == 0, cli.stdout + cli.stderr
    assert "the server's limit critpath-held = 1 wins over this config's 3" in cli.stderr, cli.stderr
    report = last_report(later)
    assert report["shared_pools"] == {"held": 1}
    assert report["services"]["later_a"]["state"] == "completed"
    assert report["services"]["later_a"]["shared_wait_s"] > 0
    assert "SHARED POOLS cost time (held = 1)" in cli.stdout, cli.stdout
    assert "Traceback" not in cli.stderr
    assert _limit(prefect_server, "critpath-held").active_slots == 0


def test_shared_pools_without_a_prefect_server_is_one_line(tmp_path):
    folder = _project(tmp_path / "p", [{"name": "a", "duration": 0.01}], "wh", 1)
    proc = critpath("run", "--shared-pools", cwd=folder, api_url=None,
                    PREFECT_API_URL="")
    assert_bad_input(proc, "--shared-pools needs a Prefect server", "PREFECT_API_URL")
    assert not (folder / ".critpath" / "last-run.json").exists()
