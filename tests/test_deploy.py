"""``critpath deploy``: the refresh registered as a deployment that pulls the project from git
(issue 13 §3), against a real Prefect server and a real local git repository (file:// URL)."""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import signal
import subprocess
import sys

from orchestrator.execution.report import read_report
from orchestrator.inputs.history import History
from orchestrator.ui.summary import summary
from tests.helpers.processes import assert_bad_input, cli_env, critpath
from tests.prefect_fixtures import readback

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


def _pool(url: str, name: str) -> None:
    """A process work pool on the server at ``url``, as its user would create it."""
    created = subprocess.run([sys.executable, "-m", "prefect", "work-pool", "create", name, "--type", "process",
                              "--overwrite"], capture_output=True, text=True, env=cli_env(url))
    assert created.returncode == 0, created.stdout + created.stderr


async def _deployment(url: str, name: str):
    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(url) as client:
        return await client.read_deployment_by_name(f"critpath-refresh/{name}")


def test_deploy_registers_a_git_pulling_deployment(prefect_server, tmp_path):
    src = _repo(tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    _pool(prefect_server, "pool-a")
    proc = critpath("deploy", "--work-pool", "pool-a", "--source", f"file://{src}", "--ref", "v1",
                    cwd=work, api_url=prefect_server)
    assert proc.returncode == 0, proc.stderr
    assert "2 services" in proc.stdout and "cron '0 2 * * *'" in proc.stdout
    assert "reports:   in each run's clone, deleted after the run (give --state-dir" in proc.stdout
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
    assert_bad_input(critpath("deploy", "--work-pool", "pool-a", "--source", f"file://{src}", "--state-dir", "state",
                              cwd=tmp_path, api_url=prefect_server),
                     "--state-dir 'state': must be an absolute path on the worker's machine")


async def _resolved_pull_steps(url: str, name: str):
    """The deployment's pull steps as the worker resolves them when a run starts (block references)."""
    from prefect.client.orchestration import PrefectClient
    from prefect.utilities.templating import resolve_block_document_references

    async with PrefectClient(url) as client:
        dep = await client.read_deployment_by_name(f"critpath-refresh/{name}")
        return dep, await resolve_block_document_references(dep.pull_steps, client=client)


def test_a_private_repositorys_token_comes_from_a_block_only(prefect_server, tmp_path):
    from prefect.blocks.system import Secret

    from tests.prefect_fixtures import api

    src = _repo(tmp_path)
    _pool(prefect_server, "pool-private")
    token = "tok-4c1d-never-stored"
    with api(prefect_server):
        Secret(value=token).save("repo-token", overwrite=True)
    proc = critpath("deploy", "--work-pool", "pool-private", "--source", f"file://{src}", "--name", "private",
                    "--credentials-block", "repo-token", cwd=tmp_path, api_url=prefect_server)
    assert proc.returncode == 0, proc.stderr
    dep, resolved = asyncio.run(_resolved_pull_steps(prefect_server, "private"))
    assert token not in dep.model_dump_json()  # not in the pull steps, nor in the parameters
    assert dep.pull_steps[0]["prefect.deployments.steps.git_clone"]["access_token"] == \
        "{{ prefect.blocks.secret.repo-token }}"
    assert resolved[0]["prefect.deployments.steps.git_clone"]["access_token"] == token
    assert_bad_input(critpath("deploy", "--work-pool", "pool-private", "--source", f"file://{src}",
                              "--credentials-block", "no-such-block", cwd=tmp_path, api_url=prefect_server),
                     "--credentials-block 'no-such-block': no Prefect Secret block")


# -- end to end: a real `prefect worker` runs the deployments ------------------------------------
#
#     a ─┬─> b        three services of a module that exists only in the git repository;
#        └─> c        each writes, for the flow run it runs in, its version and its file

STEPS = '''import json
import os
import pathlib

VERSION = {version!r}


def mark(name):
    out = pathlib.Path(os.environ["CRITPATH_TEST_MARKS"], os.environ["PREFECT__FLOW_RUN_ID"])
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_text(json.dumps({{"version": VERSION, "file": __file__}}))
'''
PROBE = {"services": [{"name": "a", "call": "deployed_steps:mark", "params": {"name": "a"}},
                      {"name": "b", "after": ["a"], "call": "deployed_steps:mark", "params": {"name": "b"}},
                      {"name": "c", "after": ["a"], "call": "deployed_steps:mark", "params": {"name": "c"}}]}


def _commit(work, version: str) -> None:
    (work / "deployed_steps.py").write_text(STEPS.format(version=version))
    _git("add", ".", cwd=work)
    _git("commit", "-q", "-m", f"version {version}", cwd=work)
    _git("push", "-q", "origin", "main", "--tags", cwd=work)


def _origin(tmp_path):
    """A bare repository (the file:// remote) and a working copy that pushes to it."""
    origin, work = tmp_path / "origin.git", tmp_path / "work"
    _git("init", "-q", "--bare", "-b", "main", str(origin), cwd=tmp_path)
    _git("clone", "-q", str(origin), str(work), cwd=tmp_path)
    _git("checkout", "-q", "-b", "main", cwd=work)
    (work / "graph.json").write_text(json.dumps(PROBE))
    (work / "critpath.toml").write_text('graph = "graph.json"\n')
    _commit(work, "1")
    _git("tag", "v1", cwd=work)
    _git("push", "-q", "origin", "v1", cwd=work)
    return origin, work


@contextlib.contextmanager
def _worker(pool: str, cwd, url: str, **env: str):
    """``prefect worker start --pool POOL`` in a session of its own, stopped with its group."""
    with open(cwd / "worker.log", "w") as log:  # read it when a run did not complete
        proc = subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", pool,
                                 "--type", "process"], cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env=cli_env(url, PREFECT_WORKER_QUERY_SECONDS="1", **env))
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        with contextlib.suppress(ProcessLookupError):  # flow-run processes it left behind
            os.killpg(proc.pid, signal.SIGKILL)


def _worker_log(marks) -> str:
    return (marks.parent / "worker" / "worker.log").read_text()


async def _run(url: str, *names: str):
    """Runs of the deployments ``names`` at once; each flow run once it is final."""
    from prefect.client.orchestration import PrefectClient
    from prefect.deployments import arun_deployment

    async with PrefectClient(url) as client:
        return await asyncio.gather(*(arun_deployment(f"critpath-refresh/{n}", client=client, timeout=300,
                                                      poll_interval=0.5, as_subflow=False) for n in names))


def _ran(url: str, flow_run, marks, state) -> dict:
    """The version each service ran, once the flow run, and each service as a task run, completed,
    and the run left its report where ``critpath run`` would, in the state folder given."""
    assert flow_run.state is not None and flow_run.state.is_completed(), (flow_run.state, _worker_log(marks))
    back = readback(url, str(flow_run.id), "abc")
    assert {n: tr.state.type.value for n, tr in back.task_runs.items()} == dict.fromkeys("abc", "COMPLETED")
    report = read_report(state / "runs" / f"{flow_run.id}.json")
    assert report["flow_run_id"] == str(flow_run.id)
    assert summary(report).startswith("3/3 services completed on threads")
    ran = {n: json.loads((marks / str(flow_run.id) / n).read_text()) for n in "abc"}
    for mark in ran.values():  # the repository's copy, cloned for this run: not the test's working copy
        assert mark["file"].endswith("deployed_steps.py") and not mark["file"].startswith(str(marks.parent))
    return {n: mark["version"] for n, mark in ran.items()}


def test_a_worker_runs_the_branch_latest_and_the_tag_pinned(prefect_server, tmp_path):
    """Two deployments of one repository, run by one worker: the branch's runs the newest commit
    pushed, the tag's keeps the code it was tagged with; every run is a flow run whose
    services are its task runs, as under ``critpath run``, and leaves its report."""
    origin, work = _origin(tmp_path)
    source, marks, elsewhere = f"file://{origin}", tmp_path / "marks", tmp_path / "worker"
    state = elsewhere / "state"
    elsewhere.mkdir()
    _pool(prefect_server, "e2e")
    with _worker("e2e", elsewhere, prefect_server, CRITPATH_TEST_MARKS=str(marks)), \
            concurrent.futures.ThreadPoolExecutor(2) as pool:  # the worker starts while both deploy
        for proc in pool.map(lambda ref: critpath("deploy", "--work-pool", "e2e", "--source", source, "--ref", ref,
                                                  "--name", f"e2e-{ref}", "--state-dir", str(state),
                                                  cwd=tmp_path, api_url=prefect_server), ("main", "v1")):
            assert proc.returncode == 0, proc.stderr
        [first] = asyncio.run(_run(prefect_server, "e2e-main"))
        assert _ran(prefect_server, first, marks, state) == dict.fromkeys("abc", "1")
        _commit(work, "2")
        branch, tag = asyncio.run(_run(prefect_server, "e2e-main", "e2e-v1"))
        assert _ran(prefect_server, branch, marks, state) == dict.fromkeys("abc", "2")
        assert _ran(prefect_server, tag, marks, state) == dict.fromkeys("abc", "1")
    with History(state) as history:  # the next run plans from these, as after critpath run
        assert history.runs() == 3 and {r["service"] for r in history.rows()} == set("abc")
