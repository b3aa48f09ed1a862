"""The service code shipped to a cluster that critpath did not start (README, "Dask and Ray").

A real ``dask scheduler`` and ``dask worker``, and a real ``ray start --head``, each run in a
folder of their own, with the project absent from their path, and more: their environment
drops the editable install of critpath (``sitecustomize`` below), so they cannot import
``runners``, ``orchestrator`` or ``services`` either, as on a cluster whose image has only
Dask or Ray. The graph's service module (``shipsvc``) exists only in the test's project
folder. ``critpath run --address`` runs against a real Prefect server.

The service appends ``{version, pid, file}`` (its module's ``__file__``) to a file, so the
tests see which copy ran, in which worker process:

* the worker ran the shipped copy (its ``__file__`` is under the cluster's folder, not the
  project's file), and a service changed between two runs against the same cluster runs
  its new code, in the same worker process (Dask) that ran the old one;
* a module the services import that the workers lack is one line, exit 2, naming the
  module, the file importing it and the worker; ``ship = false`` checks for the code
  instead of sending it; ``requirements`` reach the cluster (distributed's ``PipInstall``);
* Ray: a head with token authentication says what to set; a local Ray instance starts a
  private one even with a stale ``ray_current_cluster`` from a stopped head, and runs the
  shipped copy too.

Nothing is left running: each cluster runs in sessions of its own, and every process of
those sessions is stopped at the end (never ``ray stop``, which would stop every Ray on
the machine).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers.processes import ROOT, assert_bad_input, critpath
from tests.prefect_fixtures import readback

VENV_BIN = Path(sys.executable).parent
#: a cluster without critpath: the editable install's finder is dropped at start-up
NO_CRITPATH = '''import sys
sys.meta_path[:] = [f for f in sys.meta_path if getattr(f, "__name__", "") != "_EditableFinder"]
'''
SERVICE = '''import json
import os

VERSION = {version}


def where(out):
    with open(out, "a") as f:
        f.write(json.dumps({{"version": VERSION, "pid": os.getpid(), "file": __file__}}) + "\\n")
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster_env(folder: Path, **extra: str) -> dict:
    """The environment of a cluster process: no PYTHONPATH to the project, no critpath."""
    (folder / "no-critpath").mkdir(parents=True, exist_ok=True)
    (folder / "no-critpath" / "sitecustomize.py").write_text(NO_CRITPATH)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RAY_", "CRITPATH_"))}
    env.update(PYTHONPATH=str(folder / "no-critpath"), PIP_DISABLE_PIP_VERSION_CHECK="1", NO_COLOR="1", **extra)
    return env


def stop_sessions(sids) -> None:
    """Every process of the sessions ``sids`` and their descendants: SIGTERM, then SIGKILL."""
    procs = {}
    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) in sids:
                procs[p.pid] = p
                for child in p.children(recursive=True):
                    procs[child.pid] = child
        except (psutil.Error, OSError):
            pass
    procs.pop(os.getpid(), None)
    for p in procs.values():
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(list(procs.values()), timeout=10)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=10)


def project(folder: Path, version: int, config: str = "") -> Path:
    """A project whose only service module, ``shipsvc``, lives here and nowhere else."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "shipsvc.py").write_text(SERVICE.format(version=version))
    (folder / "g.json").write_text(json.dumps({"services": [
        {"name": "where", "call": "shipsvc:where", "params": {"out": str(folder / "where.jsonl")}}]}))
    if config:
        (folder / "critpath.toml").write_text(config)
    return folder


def where_ran(folder: Path) -> list[dict]:
    path = folder / "where.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run_ok(folder: Path, runner: str, address: str | None, api_url: str | None, **env: str) -> dict:
    args = ["run", "--graph", "g.json", "--runner", runner, *(["--address", address] if address else [])]
    proc = critpath(*args, cwd=folder, api_url=api_url, timeout=300, **env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads((folder / ".critpath" / "last-run.json").read_text())


def assert_ran_shipped_copy(run: dict, folder: Path, cluster: Path, version: int) -> None:
    assert run["version"] == version
    ran = Path(run["file"]).resolve()
    assert ran != (folder / "shipsvc.py").resolve()  # not the project's file ...
    assert ran.is_relative_to(cluster.resolve())  # ... but the copy shipped to the cluster's folder


# -- Dask -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """(address, folder) of a scheduler and one worker process with 2 threads, in a folder of their own."""
    folder = tmp_path_factory.mktemp("dask-cluster")
    env = cluster_env(folder)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([str(VENV_BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], cwd=folder, env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=open(folder / "scheduler.log", "w"))]
    try:
        deadline = time.monotonic() + 60
        while True:  # the worker must find the scheduler listening
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, (folder / "scheduler.log").read_text()
                time.sleep(0.2)
        procs.append(subprocess.Popen(
            [str(VENV_BIN / "dask"), "worker", address, "--nthreads", "2", "--nworkers", "1", "--no-dashboard",
             "--local-directory", str(folder / "work")], cwd=folder, env=env, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=open(folder / "worker.log", "w")))
        from distributed import Client

        with Client(address, timeout="60s") as client:
            client.wait_for_workers(1, timeout=60)
        yield address, folder
    finally:
        stop_sessions({p.pid for p in procs})


@pytest.mark.dask
def test_a_dask_worker_runs_the_shipped_copy_and_a_changed_service_its_new_code(dask_cluster, prefect_server,
                                                                               tmp_path):
    address, cluster = dask_cluster
    folder = project(tmp_path / "proj", version=1)
    report = run_ok(folder, "dask", address, prefect_server)
    assert report["services"]["where"]["state"] == "completed"
    first, = where_ran(folder)
    assert_ran_shipped_copy(first, folder, cluster, 1)
    assert Path(first["file"]).parent.name.startswith("critpath-code-")  # a folder per version
    rb = readback(prefect_server, report["flow_run_id"], ["where"])
    assert rb.task_runs["where"].state.is_completed()

    project(folder, version=2)  # the service changes; the cluster and its worker stay
    run_ok(folder, "dask", address, prefect_server)
    second = where_ran(folder)[1]
    assert_ran_shipped_copy(second, folder, cluster, 2)
    assert second["pid"] == first["pid"]  # the worker that had imported version 1
    assert Path(second["file"]).parent != Path(first["file"]).parent

    project(folder, version=1)  # back again: that version's folder is there, and wins again
    run_ok(folder, "dask", address, prefect_server)
    third = where_ran(folder)[2]
    assert (third["version"], third["file"]) == (1, first["file"])


@pytest.mark.dask
def test_a_module_the_dask_workers_lack_is_one_clear_error(dask_cluster, prefect_server, tmp_path):
    address, _ = dask_cluster
    lib = tmp_path / "only-here"  # importable by critpath, not by the workers, not in the project
    lib.mkdir()
    (lib / "only_here_dep.py").write_text("X = 1\n")
    folder = project(tmp_path / "proj", version=1)
    (folder / "shipsvc.py").write_text("import only_here_dep\n" + SERVICE.format(version=1))
    proc = critpath("run", "--graph", "g.json", "--runner", "dask", "--address", address, cwd=folder,
                    api_url=prefect_server, timeout=300, PYTHONPATH=f"{ROOT}{os.pathsep}{lib}")
    assert_bad_input(proc, "module 'only_here_dep' (imported by shipsvc.py) is missing on Dask worker tcp://",
                     "requirements")
    assert where_ran(folder) == []


@pytest.mark.dask
def test_ship_false_checks_the_cluster_for_the_code_instead(dask_cluster, prefect_server, tmp_path):
    address, _ = dask_cluster
    folder = project(tmp_path / "proj", version=1, config="ship = false\n")
    proc = critpath("run", "--graph", "g.json", "--runner", "dask", "--address", address, cwd=folder,
                    api_url=prefect_server, timeout=300)
    # the scheduler unpickles every task: without the code shipped, it needs critpath's runners
    assert_bad_input(proc, "module 'runners' is missing on the Dask scheduler", "ship")
    assert where_ran(folder) == []


@pytest.mark.dask
def test_the_dask_workers_must_see_the_warehouse_the_services_read(dask_cluster, prefect_server, tmp_path):
    address, _ = dask_cluster
    folder = project(tmp_path / "proj", version=1)
    (folder / "shipsvc.py").write_text('WAREHOUSE = "CRITPATH_WAREHOUSE"\n' + SERVICE.format(version=1))
    warehouse = str(tmp_path / "warehouse")
    proc = critpath("run", "--graph", "g.json", "--runner", "dask", "--address", address, cwd=folder,
                    api_url=prefect_server, timeout=300, CRITPATH_WAREHOUSE=warehouse)
    # the workers were started without it: said before anything runs, with what to set
    assert_bad_input(proc, "does not have CRITPATH_WAREHOUSE set", f"set CRITPATH_WAREHOUSE={warehouse}",
                     "workers' environment")
    assert where_ran(folder) == []


@pytest.mark.dask
def test_requirements_are_installed_on_the_dask_cluster(dask_cluster, prefect_server, tmp_path):
    """A requirement the cluster already satisfies ("pip"): no network beyond the machine."""
    address, cluster = dask_cluster
    folder = project(tmp_path / "proj", version=3, config='requirements = ["pip"]\n')
    run_ok(folder, "dask", address, prefect_server)
    assert_ran_shipped_copy(where_ran(folder)[0], folder, cluster, 3)
    from distributed import Client

    with Client(address, timeout="60s") as client:
        plugins = client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.plugins))
    assert "critpath-requirements" in plugins


# -- Ray ------------------------------------------------------------------------------------------

def start_ray_head(folder: Path, home: Path, **env: str) -> tuple[str, subprocess.Popen, Path]:
    """``ray start --head`` in ``folder``; (address, the process, its temp folder). Ray's unix
    sockets need a short path: the temp folder is made under /tmp."""
    temp = Path(tempfile.mkdtemp(prefix="cpr-", dir="/tmp"))
    port = free_port()
    proc = subprocess.Popen(
        [str(VENV_BIN / "ray"), "start", "--head", "--port", str(port), "--num-cpus", "2",
         "--node-ip-address", "127.0.0.1", "--temp-dir", str(temp), "--include-dashboard", "false",
         "--disable-usage-stats"], cwd=folder, env=cluster_env(folder, HOME=str(home), **env),
        start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out
    return f"127.0.0.1:{port}", proc, temp


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """(address, folder, HOME) of a one-node Ray cluster with 2 CPUs, in a folder of its own."""
    folder = tmp_path_factory.mktemp("ray-cluster")
    home = tmp_path_factory.mktemp("ray-home")  # no ~/.ray/auth_token of this machine's
    proc = temp = None
    try:
        address, proc, temp = start_ray_head(folder, home)
        yield address, folder, home, temp
    finally:
        if proc is not None:
            stop_sessions({proc.pid})
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.ray
def test_a_ray_cluster_runs_the_shipped_copy_and_a_changed_service_its_new_code(ray_head, prefect_server,
                                                                              tmp_path):
    address, _, home, temp = ray_head
    folder = project(tmp_path / "proj", version=1)
    report = run_ok(folder, "ray", address, prefect_server, HOME=str(home))
    first, = where_ran(folder)
    assert_ran_shipped_copy(first, folder, temp, 1)  # Ray unpacks packages in its own folder
    assert "py_modules_files" in first["file"]
    rb = readback(prefect_server, report["flow_run_id"], ["where"])
    assert rb.task_runs["where"].state.is_completed()

    project(folder, version=2)
    run_ok(folder, "ray", address, prefect_server, HOME=str(home))
    second = where_ran(folder)[1]
    assert_ran_shipped_copy(second, folder, temp, 2)
    assert Path(second["file"]).parent != Path(first["file"]).parent  # a package per version


@pytest.mark.ray
def test_a_module_the_ray_nodes_lack_is_one_clear_error(ray_head, prefect_server, tmp_path):
    address, _, home, _ = ray_head
    lib = tmp_path / "only-here"
    lib.mkdir()
    (lib / "only_here_dep.py").write_text("X = 1\n")
    folder = project(tmp_path / "proj", version=1)
    (folder / "shipsvc.py").write_text("import only_here_dep\n" + SERVICE.format(version=1))
    proc = critpath("run", "--graph", "g.json", "--runner", "ray", "--address", address, cwd=folder,
                    api_url=prefect_server, timeout=300, HOME=str(home),
                    PYTHONPATH=f"{ROOT}{os.pathsep}{lib}")
    assert_bad_input(proc, "module 'only_here_dep' (imported by shipsvc.py) is missing on Ray node")
    assert where_ran(folder) == []


@pytest.mark.ray
def test_a_ray_head_with_token_authentication_says_what_to_set(prefect_server, tmp_path):
    folder = tmp_path / "cluster"
    folder.mkdir()
    home = tmp_path / "head-home"
    home.mkdir()
    subprocess.run([str(VENV_BIN / "ray"), "get-auth-token", "--generate"], env=cluster_env(folder, HOME=str(home)),
                   capture_output=True, timeout=60, check=True)
    proc = temp = None
    try:
        address, proc, temp = start_ray_head(folder, home, RAY_AUTH_MODE="token")
        elsewhere = tmp_path / "client-home"  # a client without the cluster's token
        elsewhere.mkdir()
        proj = project(tmp_path / "proj", version=1)
        bad = critpath("run", "--graph", "g.json", "--runner", "ray", "--address", address, cwd=proj,
                       api_url=prefect_server, timeout=300, HOME=str(elsewhere))
        assert_bad_input(bad, "requires token authentication", "RAY_AUTH_MODE=token", "RAY_AUTH_TOKEN")
        assert "InvalidAuthToken" not in bad.stderr  # Ray's twenty lines are not shown: critpath says it once
        run_ok(proj, "ray", address, prefect_server, HOME=str(elsewhere), RAY_AUTH_MODE="token",
               RAY_AUTH_TOKEN_PATH=str(home / ".ray" / "auth_token"))
        assert where_ran(proj)[0]["version"] == 1
    finally:
        if proc is not None:
            stop_sessions({proc.pid})
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.ray
def test_a_local_ray_instance_is_private_and_runs_the_shipped_copy(prefect_server, tmp_path):
    """A stopped head's address file (``ray_current_cluster``) must not make a local run connect."""
    temp = Path(tempfile.mkdtemp(prefix="cpr-", dir="/tmp"))
    try:
        (temp / "ray").mkdir()
        (temp / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{free_port()}")  # nobody there
        folder = project(tmp_path / "proj", version=1)
        run_ok(folder, "ray", None, prefect_server, RAY_TMPDIR=str(temp))
        assert_ran_shipped_copy(where_ran(folder)[0], folder, temp, 1)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
