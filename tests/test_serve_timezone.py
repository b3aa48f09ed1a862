"""``[schedule] timezone`` (or ``--timezone``) is applied to the served deployment's schedule, and a
zone that does not exist is refused in one line (issue 10 §8)."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers.processes import assert_bad_input, cli_env, critpath

GRAPH = {"services": [{"name": "a", "duration": 0.01}]}


async def _schedules(url: str, name: str):
    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(url) as client:
        try:
            dep = await client.read_deployment_by_name(f"critpath-refresh/{name}")
        except Exception:  # not registered yet
            return None
        return [(s.schedule.cron, s.schedule.timezone) for s in dep.schedules]


@pytest.mark.parametrize("where", ["config", "flag"])
def test_the_time_zone_reaches_the_deployment(prefect_server, tmp_path, where):
    (tmp_path / "graph.json").write_text(json.dumps(GRAPH))
    args = ["serve", "--graph", "graph.json", "--name", f"tz-{where}"]
    if where == "config":
        (tmp_path / "critpath.toml").write_text('[schedule]\ncron = "0 2 * * *"\ntimezone = "Europe/Paris"\n')
    else:
        args += ["--cron", "0 2 * * *", "--timezone", "Europe/Paris"]
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", *args], cwd=tmp_path,
                            env=cli_env(prefect_server), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline, found = time.monotonic() + 120, None
        while time.monotonic() < deadline and proc.poll() is None and not found:
            found = asyncio.run(_schedules(prefect_server, f"tz-{where}"))
            time.sleep(0.5)  # bounds the wait for the deployment to be registered
        assert found == [("0 2 * * *", "Europe/Paris")]
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(60)


def test_a_zone_that_does_not_exist_is_refused(tmp_path):
    (tmp_path / "graph.json").write_text(json.dumps(GRAPH))
    assert_bad_input(critpath("serve", "--graph", "graph.json", "--cron", "0 2 * * *", "--timezone",
                              "Mars/Olympus", cwd=tmp_path), "--timezone 'Mars/Olympus'", "Europe/Paris")
    (tmp_path / "critpath.toml").write_text('[schedule]\ncron = "0 2 * * *"\ntimezone = "Mars/Olympus"\n')
    assert_bad_input(critpath("serve", "--graph", "graph.json", cwd=tmp_path), "schedule.timezone = 'Mars/Olympus'")
    assert not os.path.exists(tmp_path / ".critpath" / "runs")
