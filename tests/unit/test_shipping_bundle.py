"""What a refresh ships to a cluster (``orchestrator.execution.shipping``), and how a missing module
fails a service: no cluster, no server.

    pkg/            a.py imports helper (a module of the project), pkg.sub.b, pytest (site-packages),
                    json (standard library), an optional module in a try; it also holds data
                    files, a hidden file, a cache and what .gitignore ignores
    helper.py       shipped: pkg imports it
    unused.py       not shipped: nothing imports it
    .critpath/      the state folder: never shipped
"""
from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from orchestrator.execution.dispatcher import Dispatcher
from orchestrator.execution.shipping import MAX_BYTES, GitIgnore, bundle, code_for, stage
from orchestrator.inputs.config import load_config
from orchestrator.planning.errors import CritpathError
from orchestrator.planning.graph import Graph
from orchestrator.planning.model import Service
from orchestrator.planning.planner import make_plan
from runners.base import Code, Job, execute
from runners.ray import runtime_env_for
from runners.threads import ThreadRunner

SHIPPED = {"pkg/__init__.py", "pkg/a.py", "pkg/sub/__init__.py", "pkg/sub/b.py", "pkg/query.sql", "helper.py"}
NOT_SHIPPED = {"pkg/table.parquet", "pkg/rows.csv", "pkg/.env", "pkg/__pycache__/a.cpython-311.pyc",
               "pkg/secret_notes.py", "pkg/build/out.py", "unused.py", ".critpath/state.py"}


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "proj"
    write(root, {
        "pkg/__init__.py": "",
        "pkg/a.py": ("import json\nimport helper\nimport pytest\nfrom pkg.sub import b\nfrom . import sub\n"
                     "try:\n    import not_installed_anywhere_xyz\nexcept ImportError:\n    pass\n"
                     "def run():\n    return helper.X + b.Y\n"),
        "pkg/sub/__init__.py": "",
        "pkg/sub/b.py": "Y = 2\n",
        "pkg/query.sql": "select 1\n",
        "pkg/table.parquet": "PAR1",
        "pkg/rows.csv": "a,b\n",
        "pkg/.env": "PASSWORD=hunter2\n",
        "pkg/__pycache__/a.cpython-311.pyc": "",
        "pkg/secret_notes.py": "",
        "pkg/build/out.py": "",
        "helper.py": "X = 1\n",
        "unused.py": "",
        ".critpath/state.py": "",
        ".gitignore": "secret_*.py\nbuild/\n",
    })
    monkeypatch.syspath_prepend(str(root))  # as critpath run puts the project folder first
    monkeypatch.chdir(root)
    return root


def names(b) -> set[str]:
    return {name for name, _ in b.files}


def test_the_services_and_what_they_import_from_the_project_are_shipped(project):
    b = bundle(["pkg.a"], project, exclude=[project / ".critpath"])
    assert {"pkg", "helper", "runners"} <= set(b.modules)
    assert "unused" not in b.modules
    assert SHIPPED <= names(b)
    assert "runners/base.py" in names(b)  # critpath's worker code goes along
    assert not NOT_SHIPPED & names(b)
    # from site-packages: asked of every worker, not shipped; the optional import is not asked
    assert ("pytest", "pkg/a.py") in b.imports
    assert not any(m in ("json", "not_installed_anywhere_xyz", "helper") for m, _ in b.imports)


def test_orchestrator_goes_along_only_when_the_services_import_it(project):
    assert "orchestrator" not in bundle(["pkg.a"], project).modules
    write(project, {"pkg/sub/b.py": "from orchestrator import service\nY = 2\n"})
    assert "orchestrator" in bundle(["pkg.a"], project).modules


def test_the_version_is_a_hash_of_the_shipped_files_only(project):
    first = bundle(["pkg.a"], project, exclude=[project / ".critpath"])
    assert bundle(["pkg.a"], project, exclude=[project / ".critpath"]).version == first.version
    # neither data, nor ignored files, nor the state folder, nor a file's time change it
    write(project, {"pkg/more.parquet": "x", "pkg/build/other.py": "x", ".critpath/x.py": "x",
                    "pkg/secret_more.py": "x"})
    (project / "pkg" / "a.py").touch()
    assert bundle(["pkg.a"], project, exclude=[project / ".critpath"]).version == first.version
    # a changed service does
    write(project, {"pkg/sub/b.py": "Y = 3\n"})
    changed = bundle(["pkg.a"], project, exclude=[project / ".critpath"])
    assert changed.version != first.version
    assert len(changed.version) == 16


def test_too_much_to_ship_is_one_error_naming_the_largest_files(project):
    write(project, {"pkg/big_table.json": "x" * 300_000})
    with pytest.raises(CritpathError) as err:
        bundle(["pkg.a"], project, limit=100_000)
    text = str(err.value)
    assert "over the limit" in text and "pkg/big_table.json" in text and "ship = false" in text
    assert MAX_BYTES == 100 * 2**20  # Ray's cap for one package


def test_the_warehouse_and_the_state_folder_are_not_shipped(project, monkeypatch):
    write(project, {"pkg/warehouse/raw/t.py": "", "pkg/state/s.py": ""})
    monkeypatch.setenv("CRITPATH_WAREHOUSE", str(project / "pkg" / "warehouse"))
    code = code_for(Graph([Service("a", call="pkg.a:run")]), "dask", "tcp://x:8786",
                    state_dir=str(project / "pkg" / "state"))
    shipped = {p.relative_to(code.folder).as_posix() for p in Path(code.folder).rglob("*") if p.is_file()}
    assert SHIPPED <= shipped
    assert not any(n.startswith(("pkg/warehouse", "pkg/state")) for n in shipped)


def test_gitignore_patterns_as_git_reads_them(tmp_path):
    write(tmp_path, {".gitignore": "*.log\n!keep.log\n/top_only.py\ncache/\na/**/z.py\n# a comment\n\n",
                     "sub/.gitignore": "local.py\n", "x.log": "", "keep.log": "", "top_only.py": "",
                     "sub/top_only.py": "", "sub/local.py": "", "local.py": "", "cache/f.py": "",
                     "a/b/c/z.py": "", "a/z.py": "", "a/y.py": ""})
    ignored = GitIgnore(tmp_path)

    def ig(name: str) -> bool:
        return ignored(tmp_path / name, (tmp_path / name).is_dir())

    assert ig("x.log") and not ig("keep.log")
    assert ig("top_only.py") and not ig("sub/top_only.py")  # anchored at the .gitignore's folder
    assert ig("sub/local.py") and not ig("local.py")  # a nested .gitignore
    assert ig("cache") and ig("cache/f.py")  # a folder, and what is in it
    assert ig("a/b/c/z.py") and ig("a/z.py") and not ig("a/y.py")


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_in_a_git_work_tree_git_says_what_is_ignored(project):
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    (project / ".git" / "info" / "exclude").write_text("pkg/query.sql\n")  # only git knows this one
    b = bundle(["pkg.a"], project)
    assert "pkg/query.sql" not in names(b)
    assert {"pkg/a.py", "helper.py", "pkg/sub/b.py"} <= names(b)  # untracked, not ignored: shipped
    assert "pkg/secret_notes.py" not in names(b)


def test_the_staged_copy_and_its_zip_hold_the_same_files_once_per_version(project, tmp_path):
    b = bundle(["pkg.a"], project, exclude=[project / ".critpath"])
    folder, archive = stage(b, tmp_path / "ship")
    assert folder.name == b.version and archive.name == f"critpath-code-{b.version}.zip"
    in_folder = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    with zipfile.ZipFile(archive) as z:
        assert set(z.namelist()) == in_folder == names(b)
    before = archive.read_bytes()
    assert stage(b, tmp_path / "ship") == (folder, archive) and archive.read_bytes() == before
    for k in range(5):  # older versions are pruned, the current one kept
        write(project, {"pkg/sub/b.py": f"Y = {k + 10}\n"})
        stage(bundle(["pkg.a"], project), tmp_path / "ship")
    kept = [p for p in (tmp_path / "ship").iterdir() if p.is_dir()]
    assert len(kept) <= 4


def test_what_each_runner_gets(project):
    graph = Graph([Service("a", call="pkg.a:run"), Service("s", duration=0.1)])
    assert code_for(graph, "threads", None) is None
    assert code_for(graph, "processes", None) is None
    assert code_for(graph, "dask", None) is None  # a LocalCluster's workers share this machine's files
    code = code_for(graph, "dask", "tcp://10.0.0.5:8786", requirements=["duckdb>=1.1"])
    assert code.ship and Path(code.folder).is_dir() and Path(code.archive).is_file()
    assert code.requirements == ("duckdb>=1.1",) and "runners" in code.modules
    local_ray = code_for(graph, "ray", None)  # a local Ray instance gets the code too
    assert local_ray.version == code.version
    off = code_for(graph, "dask", "tcp://10.0.0.5:8786", ship=False)
    assert not off.ship and off.folder is None and off.archive is None
    assert "pkg" in off.modules and "runners" not in off.modules  # checked for on the workers instead
    assert code_for(Graph([Service("s", duration=0.1)]), "ray", "h:6379") is None  # nothing to ship


def test_rays_runtime_env_ships_each_top_level_entry_and_the_requirements(project):
    code = code_for(Graph([Service("a", call="pkg.a:run")]), "ray", "h:6379", requirements=["pip"])
    env = runtime_env_for(code, {"CRITPATH_SCALE": "0.1"})
    assert env["env_vars"] == {"CRITPATH_SCALE": "0.1"}
    assert sorted(Path(p).name for p in env["py_modules"]) == sorted(
        "helper.py" if m == "helper" else m for m in code.modules)
    assert env["pip"] == ["pip"]
    assert runtime_env_for(None, {}) == {"env_vars": {}}
    assert "py_modules" not in runtime_env_for(Code(ship=False, modules=("pkg",)), {})


def test_ship_and_requirements_in_the_config(tmp_path):
    assert load_config(folder=tmp_path).ship is True
    (tmp_path / "critpath.toml").write_text('ship = false\nrequirements = ["duckdb>=1.1", "pyarrow"]\n')
    cfg = load_config(folder=tmp_path)
    assert cfg.ship is False and cfg.requirements == ("duckdb>=1.1", "pyarrow")
    (tmp_path / "critpath.toml").write_text('ship = "no"\nrequirements = "duckdb"\n')
    with pytest.raises(CritpathError) as err:
        load_config(folder=tmp_path)
    assert "ship = 'no': must be true or false" in str(err.value)
    assert "requirements = 'duckdb': must be a list of pip requirements" in str(err.value)


def test_a_missing_module_fails_its_service_at_once_naming_the_module_and_the_worker():
    out = execute(Job("a#1", "a", call="no_such_module_xyz.sub:run"))
    assert not out.ok and out.permanent
    assert "No module named 'no_such_module_xyz'" in out.error
    assert out.worker in out.error and "a retry cannot help" in out.error
    assert not execute(Job("b#1", "b", call="json:loads", params={"s": "{"})).permanent  # its own failure


def test_the_dispatcher_spends_no_retry_on_a_missing_module():
    graph = Graph([Service("a", call="no_such_module_xyz:run", retries=3), Service("b", after=("a",), duration=0),
                   Service("c", call="json:loads", params={"s": "{"}, retries=1)])
    with ThreadRunner(2) as runner:
        runs = Dispatcher(make_plan(graph, 2), runner).run()
    assert runs["a"].state == "failed" and runs["a"].attempts == 1
    assert runs["b"].state == "skipped"
    assert runs["c"].state == "failed" and runs["c"].attempts == 2  # an ordinary failure is retried


def test_workers_must_share_the_warehouse_the_services_read(project, monkeypatch):
    from runners.base import shared_env_problem

    write(project, {"pkg/sub/b.py": 'import os\nY = os.environ.get("CRITPATH_WAREHOUSE")\n'})
    monkeypatch.setenv("CRITPATH_WAREHOUSE", "/shared/wh")
    code = code_for(Graph([Service("a", call="pkg.a:run")]), "dask", "tcp://x:8786")
    assert code.shared_env == (("CRITPATH_WAREHOUSE", "/shared/wh"),)
    assert shared_env_problem(code, {"w1": {"CRITPATH_WAREHOUSE": "/shared/wh"}}) is None
    unset = shared_env_problem(code, {"w1": {"CRITPATH_WAREHOUSE": "/shared/wh"}, "w2": {}})
    assert "w2 does not have CRITPATH_WAREHOUSE set" in unset
    assert "set CRITPATH_WAREHOUSE=/shared/wh" in unset and "workers' environment" in unset
    other = shared_env_problem(code, {"w1": {"CRITPATH_WAREHOUSE": "/elsewhere"}})
    assert "w1 sees CRITPATH_WAREHOUSE=/elsewhere" in other
    monkeypatch.delenv("CRITPATH_WAREHOUSE")
    code = code_for(Graph([Service("a", call="pkg.a:run")]), "ray", "h:6379")
    relative = shared_env_problem(code, {"node": {"CRITPATH_WAREHOUSE": "wh"}}, forwarded=True)
    assert "an absolute path" in relative and "here: critpath passes it on" in relative
    alike = {"n1": {"CRITPATH_WAREHOUSE": "/wh"}, "n2": {"CRITPATH_WAREHOUSE": "/wh"}}
    assert shared_env_problem(code, alike) is None  # set on the workers alone is enough
    write(project, {"pkg/sub/b.py": "Y = 2\n"})
    assert code_for(Graph([Service("a", call="pkg.a:run")]), "ray", "h:6379").shared_env == ()
