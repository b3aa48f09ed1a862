"""Shipping the service code to a cluster: which files, their content hash, a staged copy.

With ``--address`` (and on a local Ray instance) the workers run in an environment of
their own, which need not have the project's service modules. ``code_for`` works out what
they need and hands the runner a plain description (``runners.base.Code``):

* **Which files.** The modules the graph's ``call``s name (``--module``s included), and
  every module those import, transitively, read with ``ast`` (no user code runs). Of
  these, the top-level packages and modules that live under the project folder are
  shipped whole, with critpath's own worker code (``runners``; ``orchestrator`` too when
  the services import it, for ``@service``). Modules from site-packages are not shipped:
  they are listed (``Code.imports``) and every worker is asked for them before the run.
* **Not shipped:** what ``.gitignore`` ignores (``git ls-files`` in a git work tree, else a
  small matcher of the ``.gitignore`` files in the project), the state folder
  (``.critpath``), the warehouse (``CRITPATH_WAREHOUSE``), hidden files, caches and data
  files (Parquet, CSV, databases, archives, ...: ``DATA_SUFFIXES``).
* **Content-hashed.** ``version`` is a hash of every shipped file's name and content, so an
  unchanged project is not sent again, and the runner keeps each version apart.
* **Shared knobs.** When the shipped code names ``CRITPATH_WAREHOUSE`` (``SHARED_KNOBS``),
  the runner checks that every worker sees it alike, as an absolute path, before the run.
* **Size.** Above ``MAX_BYTES`` (100 MiB, Ray's cap for a package) it is one error naming
  the largest files.

The staged copy is ``<state>/ship/<version>/`` (one entry per top-level name: Ray's
``py_modules``) and ``<state>/ship/critpath-code-<version>.zip`` (a Dask worker plugin
uploads it). ``ship = false`` in ``critpath.toml`` sends nothing: the workers are then
only checked for the modules (their image has the code).
"""
from __future__ import annotations

import ast
import fnmatch
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from runners.base import Code

from ..planning.errors import CritpathError

#: Ray's limit for one package of a runtime_env, and a sane one for a Dask plugin
MAX_BYTES = 100 * 2**20
#: staged versions kept in <state>/ship besides the current one
KEEP_VERSIONS = 3
#: data and build artefacts: never code, never shipped
DATA_SUFFIXES = frozenset({
    ".parquet", ".pq", ".csv", ".tsv", ".json.gz", ".jsonl", ".ndjson", ".duckdb", ".db", ".sqlite",
    ".sqlite3", ".arrow", ".feather", ".orc", ".avro", ".npy", ".npz", ".pkl", ".pickle", ".h5", ".hdf5",
    ".xlsx", ".xls", ".zip", ".gz", ".bz2", ".xz", ".zst", ".tar", ".tgz", ".whl", ".egg", ".log",
    ".pyc", ".pyo", ".wal", ".tmp",
})
SKIP_DIRS = frozenset({"__pycache__", "node_modules", ".git", ".hg", ".svn"})
#: critpath's own packages: shipped from wherever they are installed (runners always)
OWN = ("runners", "orchestrator")
#: knobs that, when the services read them, every worker must see alike: one warehouse for all
SHARED_KNOBS = ("CRITPATH_WAREHOUSE",)


@dataclass(frozen=True)
class Bundle:
    """What ``bundle`` found: the files to ship and what they need from elsewhere."""

    root: Path
    modules: tuple[str, ...]  # top-level packages and modules shipped
    files: tuple[tuple[str, Path], ...]  # (name in the archive, source file), sorted by name
    imports: tuple[tuple[str, str], ...]  # (top-level module from elsewhere, a file importing it)
    version: str
    size: int
    reads: tuple[str, ...] = ()  # the SHARED_KNOBS that the project's shipped code names


def code_for(graph, runner: str, address: str | None, *, ship: bool = True, requirements: Iterable[str] = (),
             modules: Iterable[str] = (), root: str | os.PathLike = ".", state_dir: str | os.PathLike = ".critpath",
             limit: int = MAX_BYTES) -> Code | None:
    """What ``runner`` must ship (or check for) to run ``graph``; None when its workers share
    this process's files: threads, processes, and a Dask cluster started here (a local
    Ray instance gets the code too: its workers import from where Ray puts it)."""
    if runner not in ("dask", "ray") or (runner == "dask" and not address):
        return None
    entry = [svc.call.partition(":")[0] for svc in graph if svc.call]
    entry += [m.strip() for m in modules if m and m.strip()]
    if not entry:  # synthetic services only: nothing of the project runs on a worker
        return Code(ship=False, requirements=tuple(requirements)) if requirements else None
    b = bundle(entry, root, exclude=_excluded(root, state_dir), limit=limit)
    shared = tuple((k, os.environ.get(k)) for k in b.reads)
    if not ship:
        return Code(version=b.version, modules=tuple(m for m in b.modules if m != "runners"), imports=b.imports,
                    requirements=tuple(requirements), ship=False, size=b.size, shared_env=shared)
    folder, archive = stage(b, Path(state_dir) / "ship")
    return Code(version=b.version, modules=b.modules, folder=str(folder), archive=str(archive), imports=b.imports,
                requirements=tuple(requirements), ship=True, size=b.size, shared_env=shared)


def _excluded(root, state_dir) -> tuple[Path, ...]:
    """Folders never shipped: the state folder and the warehouse."""
    out = [Path(state_dir)]
    warehouse = os.environ.get("CRITPATH_WAREHOUSE")
    if warehouse:
        out.append(Path(warehouse).expanduser())
    return tuple(p if p.is_absolute() else Path(root) / p for p in out)


# -- which files -------------------------------------------------------------------------------

def bundle(entry: Iterable[str], root: str | os.PathLike = ".", *, exclude: Iterable[Path] = (),
           limit: int = MAX_BYTES) -> Bundle:
    """The files that the modules ``entry`` (dotted names) need from the project folder ``root``,
    with critpath's ``runners``; their imports from elsewhere; a content hash; checked against
    ``limit`` bytes."""
    root = Path(root).resolve()
    skip = [Path(p).resolve() for p in exclude]
    shipped: dict[str, Path] = {}  # top-level name -> its package folder or module file
    external: dict[str, str] = {}  # top-level name -> a file that imports it
    seen: set[str] = set()
    # (top-level name, the file importing it or None for the graph's own, optional import)
    todo: list[tuple[str, str | None, bool]] = [(n.partition(".")[0], None, False) for n in entry]
    todo.append(("runners", None, False))
    stdlib = sys.stdlib_module_names | set(sys.builtin_module_names)
    while todo:
        top, by, optional = todo.pop()
        if not top or top in seen or top in stdlib and top not in OWN:
            continue
        where = _locate(top, root)
        if where is None:  # not here either: an optional import, or the workers must have it
            if not optional:
                seen.add(top)
                external.setdefault(top, by or "the graph")
            continue
        seen.add(top)
        if top in OWN:  # critpath's own code, from wherever it is installed (not walked)
            shipped[top] = where
        elif _in_site_packages(where) or not _under(where, root):
            if not optional:
                external.setdefault(top, by or "the graph")
        else:
            shipped[top] = where
            for path in _python_files(where):
                rel = _rel(path, where)
                todo.extend((name, rel, opt) for name, opt in imports_of(path) if name not in seen)
    ignored = _ignore_rule(root)
    files: list[tuple[str, Path]] = []
    for _, where in sorted(shipped.items()):
        for path in _files(where, skip, ignored if _under(where, root) else None):
            files.append((_rel(path, where), path))
    files.sort()
    size = sum(p.stat().st_size for _, p in files)
    if size > limit:
        biggest = sorted(files, key=lambda f: f[1].stat().st_size, reverse=True)[:3]
        raise CritpathError(
            f"the service code to ship is {size / 2**20:.1f} MiB, over the limit of {limit / 2**20:.0f} MiB: "
            + ", ".join(f"{name} ({p.stat().st_size / 2**20:.1f} MiB)" for name, p in biggest)
            + "; move data out of the packages, add it to .gitignore, or set ship = false in critpath.toml "
            "and install the code on the workers")
    h = hashlib.sha256()
    for name, path in files:
        h.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    reads = set()
    for name, path in files:
        if path.suffix == ".py" and name.partition("/")[0] not in OWN:
            text = path.read_text(encoding="utf-8", errors="replace")
            reads.update(k for k in SHARED_KNOBS if k in text)
    return Bundle(root, tuple(sorted(shipped)), tuple(files), tuple(sorted(external.items())),
                  h.hexdigest()[:16], size, tuple(sorted(reads)))


def _locate(top: str, root: Path) -> Path | None:
    """Where the top-level module ``top`` is found from here (a package's folder, a module's
    file), without importing it; None when nothing provides it or it is built in."""
    if top in sys.modules and getattr(sys.modules[top], "__spec__", None) is not None:
        spec = sys.modules[top].__spec__
    else:
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        places = [Path(p) for p in spec.submodule_search_locations]
        inside = [p for p in places if _under(p, root)]
        return (inside or places)[0]
    if spec.origin and spec.origin not in ("built-in", "frozen") and os.path.isfile(spec.origin):
        return Path(spec.origin)
    return None


def _under(path: Path, root: Path) -> bool:
    try:
        return Path(path).resolve().is_relative_to(root)
    except OSError:
        return False


def _in_site_packages(path: Path) -> bool:
    p = Path(path).resolve()
    if {"site-packages", "dist-packages"} & set(p.parts):
        return True
    return any(p.is_relative_to(Path(prefix).resolve()) for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix})


def _rel(path: Path, where: Path) -> str:
    """``path``'s name in the archive: relative to the folder that holds its top-level entry."""
    return path.relative_to(where.parent).as_posix()


def _python_files(where: Path) -> list[Path]:
    if where.is_file():
        return [where] if where.suffix == ".py" else []
    return sorted(p for p in where.rglob("*.py") if not SKIP_DIRS & set(p.relative_to(where).parts))


def _files(where: Path, skip: list[Path], ignored) -> list[Path]:
    """Every file of a top-level entry that is shipped."""
    if where.is_file():
        return [where]
    out = []
    for dirpath, dirnames, filenames in os.walk(where):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames
                             if d not in SKIP_DIRS and not d.startswith(".") and not d.endswith(".egg-info")
                             and not any(_under(here / d, s) for s in skip)
                             and not (ignored and ignored(here / d, True)))
        for name in sorted(filenames):
            path = here / name
            if name.startswith(".") or _data(name) or any(_under(path, s) for s in skip):
                continue
            if ignored and ignored(path, False):
                continue
            if path.is_file():
                out.append(path)
    return out


def _data(name: str) -> bool:
    lower = name.lower()
    return any(lower.endswith(suffix) for suffix in DATA_SUFFIXES)


def imports_of(path: Path) -> list[tuple[str, bool]]:
    """The top-level modules ``path`` imports, absolute imports only (a relative one stays in
    its package), each with whether it is optional: inside a ``try`` that catches the
    ImportError, or under ``if TYPE_CHECKING``. ``importlib.import_module("x.y")`` with a
    literal counts too. A file that does not parse imports nothing here (the worker says why)."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError):
        return []
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, optional: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend((alias.name.partition(".")[0], optional) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if not node.level and node.module:
                found.append((node.module.partition(".")[0], optional))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and not node.args[0].value.startswith(".")):
            found.append((node.args[0].value.partition(".")[0], optional))
        if isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
            guarded = optional or any(_catches_import_error(h) for h in node.handlers)
            for child in node.body:
                visit(child, guarded)
            for child in [*node.handlers, *node.orelse, *node.finalbody]:
                visit(child, optional)
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, optional)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, optional)

    visit(tree, False)
    return found


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    names = []
    kinds = handler.type
    if kinds is None:
        return True
    for k in (kinds.elts if isinstance(kinds, ast.Tuple) else [kinds]):
        names.append(k.attr if isinstance(k, ast.Attribute) else getattr(k, "id", ""))
    return bool({"ImportError", "ModuleNotFoundError", "Exception", "BaseException"} & set(names))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


# -- .gitignore ---------------------------------------------------------------------------------

def _ignore_rule(root: Path):
    """A predicate ``(path, is_dir) -> ignored`` for files under ``root``: git's own answer in
    a git work tree (``git ls-files``), else ``.gitignore`` files read by ``GitIgnore``."""
    listed = _git_files(root)
    if listed is not None:
        tracked_dirs = {d for f in listed for d in f.parents}

        def by_git(path: Path, is_dir: bool) -> bool:
            p = path.resolve()
            return p not in tracked_dirs if is_dir else p not in listed

        return by_git
    return GitIgnore(root)


def _git_files(root: Path) -> set[Path] | None:
    """The files git does not ignore under ``root`` (tracked or not), resolved; None when
    ``root`` is not in a git work tree or git is not there."""
    try:
        top = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel"], capture_output=True,
                             text=True, timeout=30)
        if top.returncode != 0:
            return None
        out = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                              "--", "."], capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return {(root / name).resolve() for name in os.fsdecode(out.stdout).split("\0") if name}


class GitIgnore:
    """``.gitignore`` files under a folder, as git reads them (the common forms): blank lines
    and ``#`` comments skipped, ``!`` re-includes, a trailing ``/`` matches folders only, a
    pattern holding a ``/`` is anchored to its file's folder, ``*``, ``?``, ``[...]`` and
    ``**``. A file inside an ignored folder is ignored (git does not look inside it)."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self._rules: dict[Path, list[tuple[re.Pattern, bool, bool]]] = {}

    def _rules_of(self, folder: Path) -> list[tuple[re.Pattern, bool, bool]]:
        if folder not in self._rules:
            rules = []
            f = folder / ".gitignore"
            if f.is_file():
                for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
                    rule = self.compile(line)
                    if rule is not None:
                        rules.append(rule)
            self._rules[folder] = rules
        return self._rules[folder]

    @staticmethod
    def compile(line: str) -> tuple[re.Pattern, bool, bool] | None:
        """``(pattern over the path relative to the .gitignore's folder, negated, folders only)``."""
        line = line.rstrip("\n")
        if not line.strip() or line.startswith("#"):
            return None
        line = line.rstrip(" ") if not line.endswith("\\ ") else line
        negated = line.startswith("!")
        if negated:
            line = line[1:]
        if line.startswith("\\"):
            line = line[1:]
        dir_only = line.endswith("/")
        line = line.rstrip("/")
        anchored = "/" in line
        line = line.lstrip("/")
        parts = []
        i = 0
        while i < len(line):
            if line.startswith("**/", i):
                parts.append("(?:.*/)?")
                i += 3
            elif line.startswith("/**", i) and i + 3 == len(line):
                parts.append("/.*")
                i += 3
            elif line.startswith("**", i):
                parts.append(".*")
                i += 2
            elif line[i] == "*":
                parts.append("[^/]*")
                i += 1
            elif line[i] == "?":
                parts.append("[^/]")
                i += 1
            elif line[i] == "[":
                j = line.find("]", i + 1)
                if j < 0:
                    parts.append(re.escape("["))
                    i += 1
                else:
                    body = fnmatch.translate(line[i:j + 1])  # a character class, as fnmatch reads it
                    parts.append(body[body.index("["):body.rindex("]") + 1] if "[" in body else re.escape(line[i:j + 1]))
                    i = j + 1
            else:
                parts.append(re.escape(line[i]))
                i += 1
        body = "".join(parts)
        pattern = re.compile(body if anchored else f"(?:.*/)?{body}")
        return pattern, negated, dir_only

    def __call__(self, path: Path, is_dir: bool) -> bool:
        path = Path(path).resolve()
        try:
            rel = path.relative_to(self.root)
        except ValueError:
            return False
        # a folder on the way that is ignored hides everything in it
        for k in range(1, len(rel.parts)):
            if self._match(self.root.joinpath(*rel.parts[:k]), True):
                return True
        return self._match(path, is_dir)

    def _match(self, path: Path, is_dir: bool) -> bool:
        ignored = False
        rel = path.relative_to(self.root)
        for k in range(len(rel.parts)):  # .gitignore files from the root down; the deepest decides last
            folder = self.root.joinpath(*rel.parts[:k])
            sub = "/".join(rel.parts[k:])
            for pattern, negated, dir_only in self._rules_of(folder):
                if dir_only and not is_dir:
                    continue
                if pattern.fullmatch(sub):
                    ignored = not negated
        return ignored


# -- the staged copy ----------------------------------------------------------------------------

def stage(b: Bundle, into: Path) -> tuple[Path, Path]:
    """``into/<version>/`` (the files, one entry per top-level name) and
    ``into/critpath-code-<version>.zip``; made once per version, whole or not at all."""
    into = Path(into)
    into.mkdir(parents=True, exist_ok=True)
    folder, archive = into / b.version, into / f"critpath-code-{b.version}.zip"
    if not folder.is_dir():
        tmp = into / f".{b.version}.{uuid.uuid4().hex[:8]}.tmp"
        for name, path in b.files:
            dest = tmp / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
        for top in b.modules:  # an entry with no file left (all ignored) is still a package
            if not any(n.split("/", 1)[0] in (top, f"{top}.py") for n, _ in b.files):
                (tmp / top).mkdir(parents=True, exist_ok=True)
        try:
            os.rename(tmp, folder)
        except OSError:  # another run staged it meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
    if not archive.is_file():
        tmp = into / f".{archive.name}.{uuid.uuid4().hex[:8]}.tmp"
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            for name, _ in b.files:
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                z.writestr(info, (folder / name).read_bytes())
        os.replace(tmp, archive)
    _prune(into, b.version)
    return folder, archive


def _prune(into: Path, keep: str) -> None:
    """Keep the newest ``KEEP_VERSIONS`` staged versions besides ``keep``."""
    versions = sorted((p for p in into.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != keep),
                      key=lambda p: p.stat().st_mtime, reverse=True)
    for old in versions[KEEP_VERSIONS:]:
        shutil.rmtree(old, ignore_errors=True)
        (into / f"critpath-code-{old.name}.zip").unlink(missing_ok=True)
