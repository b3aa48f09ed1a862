"""``critpath deploy``: the refresh registered as a deployment that pulls the project from git
(issue 13 §3), against a real Prefect server and a real local git repository (file:// URL)."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys

from tests.helpers.processes import assert_bad_input, critpath

GRAPH = {"services": [{"name": "a", "duration": 0.01}, {"name": "b", "after": ["a"], "duration": 0.01}]}


def _git(*args, cwd):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin", "HOME": str(cwd)})


def _repo(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "graph.json").write_text(json.dumps(GRAPH))
    (src / "critpath.toml").write_text('graph = "graph.json"\n[schedule]\ncron = "0 2 * * *"\n')
    _git("init", "-q", "-b", "main", cwd=src)
    _git("add", ".", cwd=src)
    _git("commit", "-q", "-m", "first", cwd=src)
    _git("tag", "v1", cwd=src)
    return src


async def _deployment(url: str, name: str):
    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(url) as client:
        return await client.read_deployment_by_name(f"critpath-refresh/{name}")


def test_deploy_registers_a_git_pulling_deployment(prefect_server, tmp_path):
    src = _repo(tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    created = subprocess.run([sys.executable, "-m", "prefect", "work-pool", "create", "pool-a", "--type", "process"],
                             capture_output=True, text=True, env={**__import__("os").environ,
                                                                   "PREFECT_API_URL": prefect_server})
    assert created.returncode == 0, created.stderr
    proc = critpath("deploy", "--work-pool", "pool-a", "--source", f"file://{src}", "--ref", "v1",
                    cwd=work, api_url=prefect_server)
    assert proc.returncode == 0, proc.stderr
    assert "2 services" in proc.stdout and "cron '0 2 * * *'" in proc.stdout
    dep = asyncio.run(_deployment(prefect_server, "v1"))
    assert dep.entrypoint == "orchestrator.flows.serving.refresh" and dep.work_pool_name == "pool-a"
    clone = dep.pull_steps[0]["prefect.deployments.steps.git_clone"]
    assert clone["repository"] == f"file://{src}" and clone["branch"] == "v1"
    assert [s.schedule.cron for s in dep.schedules] == ["0 2 * * *"]


def test_bad_sources_refs_and_pools_are_one_line(prefect_server, tmp_path):
    src = _repo(tmp_path)
    assert_bad_input(critpath("deploy", "--work-pool", "nope", "--source", str(tmp_path / "not-a-repo"),
                              cwd=tmp_path, api_url=prefect_server), "is not a git repository")
    assert_bad_input(critpath("deploy", "--work-pool", "nope", "--source", f"file://{src}", "--ref", "no-such",
                              cwd=tmp_path, api_url=prefect_server), "--ref 'no-such': not a branch or tag")
    assert_bad_input(critpath("deploy", "--work-pool", "missing-pool", "--source", f"file://{src}",
                              cwd=tmp_path, api_url=prefect_server),
                     "--work-pool 'missing-pool' does not exist", "prefect work-pool create missing-pool")
