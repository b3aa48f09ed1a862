"""Configuration in one place: ``critpath.toml`` or ``[tool.critpath]`` in ``pyproject.toml``.

    modules = ["services.refinery"]     # or: graph = "graph.json"
    runner = "dask"                      # threads | processes | dask | ray
    workers = 4
    max_concurrency = 4
    address = "tcp://scheduler:8786"     # an existing Dask scheduler or Ray cluster
    retries = 1                          # defaults for services that set none
    retry_delay = 5
    timeout = 600
    state_dir = ".critpath"              # reports, timelines, local Prefect server data
    json_report = ".critpath/last-run.json"
    [pools]
    warehouse = 4
    [schedule]
    cron = "0 2 * * *"                   # or: interval = 900 (seconds)

Precedence: command-line flag > this file > built-in default. Unknown keys are
errors (with a suggestion), so a typo never silently falls back to a default.
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CritpathError, did_you_mean

DEFAULT_MODULE = "services.refinery"
KEYS = {"modules", "graph", "runner", "workers", "max_concurrency", "address", "retries", "retry_delay",
        "timeout", "state_dir", "json_report", "pools", "schedule", "time_scale", "select"}


@dataclass(frozen=True)
class Config:
    path: str | None = None
    modules: tuple[str, ...] = ()
    graph: str | None = None
    runner: str = "threads"
    workers: int | None = None
    max_concurrency: int | None = None
    address: str | None = None
    retries: int | None = None
    retry_delay: float | None = None
    timeout: float | None = None
    state_dir: str = ".critpath"
    json_report: str | None = None
    time_scale: float = 1.0
    select: str | None = None
    pools: dict[str, int] = field(default_factory=dict)
    schedule: dict[str, Any] = field(default_factory=dict)


def find_config(folder: Path) -> tuple[Path, dict] | None:
    """The config table of ``folder``: critpath.toml first, then pyproject's [tool.critpath]."""
    own = folder / "critpath.toml"
    if own.is_file():
        return own, _parse(own)
    pyproject = folder / "pyproject.toml"
    if pyproject.is_file():
        table = _parse(pyproject).get("tool", {}).get("critpath")
        if isinstance(table, dict):
            return pyproject, table
    return None


def load_config(path: str | Path | None = None, folder: str | Path = ".") -> Config:
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise CritpathError(f"config file {str(p)!r} not found; give an existing file to --config")
        data = _parse(p)
        if p.name == "pyproject.toml":
            data = data.get("tool", {}).get("critpath", {})
        found = (p, data)
    else:
        found = find_config(Path(folder))
    if found is None:
        return Config()
    p, data = found
    return _build(str(p), data)


def _parse(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:  # message ends "(at line 3, column 7)"
        raise CritpathError(f"{path}: {exc}; fix the TOML syntax there") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CritpathError(f"{path}: cannot read it ({exc})") from None


def _build(path: str, data: dict) -> Config:
    problems = []
    for key in sorted(set(data) - KEYS):
        problems.append(f"unknown key {key!r}{did_you_mean(key, KEYS)}; known keys: {', '.join(sorted(KEYS))}")

    def want(key, kind, check=lambda v: True, rule=""):
        if key not in data:
            return None
        v = data[key]
        if isinstance(v, bool) or not isinstance(v, kind) or not check(v):
            problems.append(f"{key} = {v!r}: {rule}")
            return None
        return v

    modules = data.get("modules", ())
    if isinstance(modules, str):
        modules = (modules,)
    if not isinstance(modules, (list, tuple)) or not all(isinstance(m, str) for m in modules):
        problems.append(f"modules = {modules!r}: must be a list of import paths")
        modules = ()
    positive = dict(check=lambda v: v >= 1, rule="must be a whole number of at least 1")
    seconds = dict(check=lambda v: math.isfinite(v) and v >= 0, rule="must be a number of seconds >= 0")
    pools = data.get("pools", {})
    if not isinstance(pools, dict):
        problems.append(f"pools = {pools!r}: must be a table of pool = limit")
        pools = {}
    for name, limit in pools.items():
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            problems.append(f"pools.{name} = {limit!r}: a pool limit must be a whole number of at least 1")
    schedule = data.get("schedule", {})
    if not isinstance(schedule, dict) or set(schedule) - {"cron", "interval", "timezone"}:
        problems.append("schedule: must be a table with 'cron' (a cron string) or 'interval' (seconds)")
        schedule = {}
    cfg = Config(
        path=path, modules=tuple(modules), graph=want("graph", str, rule="must be a file path"),
        runner=want("runner", str, rule="must be a runner name") or "threads",
        workers=want("workers", int, **positive), max_concurrency=want("max_concurrency", int, **positive),
        address=want("address", str, rule="must be an address string"),
        retries=want("retries", int, check=lambda v: v >= 0, rule="must be a whole number >= 0"),
        retry_delay=want("retry_delay", (int, float), **seconds),
        timeout=want("timeout", (int, float), check=lambda v: math.isfinite(v) and v > 0,
                     rule="must be a number of seconds > 0"),
        state_dir=want("state_dir", str, rule="must be a folder path") or ".critpath",
        json_report=want("json_report", str, rule="must be a file path"),
        time_scale=want("time_scale", (int, float), check=lambda v: math.isfinite(v) and v > 0,
                        rule="must be a number > 0") or 1.0,
        select=want("select", str, rule="must be a selection string"),
        pools={k: v for k, v in pools.items() if isinstance(v, int)}, schedule=dict(schedule),
    )
    if problems:
        head = f"{path}: " + (problems[0] if len(problems) == 1 else f"{len(problems)} problems:\n  - "
                              + "\n  - ".join(problems))
        raise CritpathError(head)
    return cfg
