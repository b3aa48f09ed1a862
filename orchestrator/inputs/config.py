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
    secrets = ["db_password"]            # environment variables whose values are masked everywhere
    cpu_aware = false                    # admit services only while their CPU demand fits the cores
    shared_pools = false                 # share the pools' limits with every refresh on the Prefect server
    history_runs = 50                    # runs of each service the duration history keeps
    deadline = "09:00"                   # HH:MM (next occurrence), ISO 8601, or +DURATION (+2h)
    deadline_margin = "10m"              # flag a deadline at risk this much earlier (seconds or 90s/15m/2h)
    on_deadline_risk = "notify.sh"       # a shell command, run with the details as JSON on stdin
    ship = true                          # with --address (and on Ray): send the service code to the workers
    requirements = ["duckdb>=1.1"]       # pip requirements installed on a cluster's workers first
    serve_collision = "queue"            # a served refresh that finds one running: queue | skip
    debounce = 2                         # seconds: events this close together become one refresh
    [pools]
    warehouse = 4
    [schedule]
    cron = "0 2 * * *"                   # or: interval = 900 (seconds)
    [[watch]]                            # critpath watch: a landing folder and the service it updates
    path = "landing/orders"
    service = "ingest_orders"

Precedence: command-line flag > this file > built-in default. Unknown keys are
errors (with a suggestion), so a typo never silently falls back to a default.
Numbers are checked against the bounds of ``orchestrator.planning.ranges`` (the same as in
graph files), and a file that cannot be read at all (a number of thousands of
digits, arrays nested thousands deep) is one error naming the file, like any other.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..planning.deadline import check_syntax, margin_seconds
from ..planning.errors import CritpathError, did_you_mean, show
from ..planning.ranges import (
    MAX_RETRIES,
    MAX_SECONDS,
    MAX_SLOTS,
    MAX_TIME_SCALE,
    check_number,
    is_pool_limit,
    pool_limit_problem,
)

DEFAULT_MODULE = "services.refinery"
DEFAULT_DEBOUNCE = 2.0
COLLISIONS = ("queue", "skip")
DEBOUNCE_RULE = f"must be a number of seconds > 0, at most {MAX_SECONDS:g}"
KEYS = {"modules", "graph", "runner", "workers", "max_concurrency", "address", "retries", "retry_delay",
        "timeout", "state_dir", "json_report", "pools", "schedule", "time_scale", "select", "secrets",
        "cpu_aware", "shared_pools", "history_runs", "deadline", "deadline_margin", "on_deadline_risk", "ship", "requirements",
        "serve_collision", "debounce", "watch"}


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
    #: names of environment variables holding credentials (upper-cased when read, as ``secret()``
    #: does): every worker masks their values from its first service
    secrets: tuple[str, ...] = ()
    cpu_aware: bool = False  # admit services only while their CPU demand fits the cores
    #: each pool a Prefect global concurrency limit (critpath-<pool>) shared by every refresh
    shared_pools: bool = False
    history_runs: int = 50  # runs of each service the duration history keeps
    deadline: str | None = None  # WHEN, as --deadline takes it; resolved when a command starts
    deadline_margin: float = 0.0  # seconds: flag a deadline at risk this much earlier
    on_deadline_risk: str | None = None  # shell command run with the details as JSON on stdin
    #: on a cluster (--address, or Ray): ship the project's service code to the workers for each run
    ship: bool = True
    requirements: tuple[str, ...] = ()  # pip requirements installed on a cluster's workers first
    pools: dict[str, int] = field(default_factory=dict)
    schedule: dict[str, Any] = field(default_factory=dict)
    serve_collision: str = "queue"  # a served refresh that finds another running: queue | skip
    debounce: float = DEFAULT_DEBOUNCE  # seconds: events this close together become one refresh
    #: ``critpath watch`` pairs: ({"path", "service", "debounce"}, ...), each checked here
    watch: tuple[dict, ...] = ()


def find_config(folder: Path) -> tuple[Path, dict] | None:
    """The config table of ``folder``: critpath.toml first, then pyproject's [tool.critpath]."""
    own = folder / "critpath.toml"
    if own.is_file():
        return own, _parse(own)
    pyproject = folder / "pyproject.toml"
    if pyproject.is_file():
        table = _tool_table(pyproject, _parse(pyproject))
        if table is not None:
            return pyproject, table
    return None


def _tool_table(path: Path, data: dict) -> dict | None:
    """``[tool.critpath]`` of a parsed pyproject.toml; None when it has none."""
    tool = data.get("tool", {})
    if not isinstance(tool, dict):
        raise CritpathError(f"{path}: 'tool' = {show(tool)} must be a table ([tool]); fix it, or put "
                            "critpath's settings in critpath.toml")
    table = tool.get("critpath")
    if table is not None and not isinstance(table, dict):
        raise CritpathError(f"{path}: 'tool.critpath' = {show(table)} must be a table ([tool.critpath]) of "
                            "settings; fix it, or put critpath's settings in critpath.toml")
    return table


def load_config(path: str | Path | None = None, folder: str | Path = ".") -> Config:
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise CritpathError(f"config file {str(p)!r} not found; give an existing file to --config")
        data = _parse(p)
        if p.name == "pyproject.toml":
            data = _tool_table(p, data) or {}
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
    except RecursionError:  # tomllib parses nested arrays recursively
        raise CritpathError(f"{path}: arrays or tables nested too deeply to read; no setting takes more "
                            "than a list of strings") from None
    except ValueError:  # an integer longer than int_max_str_digits
        raise CritpathError(f"{path}: a number has thousands of digits; no setting takes such a number "
                            f"(workers and max_concurrency at most {MAX_SLOTS}, seconds at most "
                            f"{MAX_SECONDS:g})") from None


def is_time_zone(name) -> bool:
    """An IANA time zone this machine knows (``zoneinfo``): "Europe/Paris" yes, "Mars/Olympus" no."""
    import zoneinfo

    if not isinstance(name, str) or not name.strip():
        return False
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _flag(data: dict, key: str, problems: list[str], default: bool = False) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        problems.append(f"{key} = {show(value)}: must be true or false")
        return default
    return value


def _build(path: str, data: dict) -> Config:
    problems = []
    for key in sorted(set(data) - KEYS):
        problems.append(f"unknown key {key!r}{did_you_mean(key, KEYS)}; known keys: {', '.join(sorted(KEYS))}")

    def want(key, kind, check=lambda v: True, rule=""):
        if key not in data:
            return None
        v = data[key]
        if isinstance(v, bool) or not isinstance(v, kind) or not check(v):
            problems.append(f"{key} = {show(v)}: {rule}")  # show(): never a 4,000-digit line
            return None
        return v

    def number(key, low, high, rule, whole=False, low_open=False):
        return want(key, (int, float), lambda v: check_number(v, low, high, whole, low_open), rule)

    def a_path(key, rule):  # "" would mean the project folder itself; NUL cannot be in a path
        return want(key, str, lambda v: bool(v.strip()) and "\0" not in v, rule)

    modules = data.get("modules", ())
    if isinstance(modules, str):
        modules = (modules,)
    if not isinstance(modules, (list, tuple)) or not all(isinstance(m, str) for m in modules):
        problems.append(f"modules = {show(modules)}: must be a list of import paths")
        modules = ()
    secrets = data.get("secrets", [])
    if (not isinstance(secrets, list)
            or not all(isinstance(n, str) and n.strip() and not set(n) & {"=", "\0"} for n in secrets)):
        problems.append(f"secrets = {show(secrets)}: must be a list of environment variable names, "
                        'such as ["db_password"]')
        secrets = []
    requirements = data.get("requirements", [])
    if (not isinstance(requirements, list)
            or not all(isinstance(r, str) and r.strip() and "\0" not in r and "\n" not in r for r in requirements)):
        problems.append(f"requirements = {show(requirements)}: must be a list of pip requirements, "
                        'such as ["duckdb>=1.1"]')
        requirements = []
    slots = f"must be a whole number from 1 to {MAX_SLOTS}"
    pools = data.get("pools", {})
    if not isinstance(pools, dict):
        problems.append(f"pools = {show(pools)}: must be a table of pool = limit")
        pools = {}
    for name, limit in pools.items():
        if not name.strip():
            problems.append(f"pools.{name!r}: a pool name must not be blank")
        elif (problem := pool_limit_problem(name, limit)) is not None:
            problems.append(f"pools: {problem}")
    schedule = data.get("schedule", {})
    if not isinstance(schedule, dict) or set(schedule) - {"cron", "interval", "timezone"}:
        problems.append("schedule: must be a table with 'cron' (a cron string) or 'interval' (seconds)")
        schedule = {}
    for key, ok, rule in (("cron", lambda v: isinstance(v, str), 'a cron string such as "0 2 * * *"'),
                          ("timezone", is_time_zone, 'a time zone name such as "Europe/Paris" (IANA)'),
                          ("interval", lambda v: check_number(v, 1, MAX_SECONDS),
                           f"a number of seconds from 1 to {MAX_SECONDS:g}")):
        if key in schedule and not ok(schedule[key]):
            problems.append(f"schedule.{key} = {show(schedule[key])}: must be {rule}")
    deadline = want("deadline", str, rule="must be a string: HH:MM, an ISO 8601 date-time or +DURATION")
    if deadline is not None:
        try:
            check_syntax(deadline, "deadline")
        except CritpathError as exc:
            problems.append(str(exc))
            deadline = None
    margin = 0.0
    if "deadline_margin" in data:
        margin = margin_seconds(data["deadline_margin"])
        if margin is None:
            problems.append(f"deadline_margin = {show(data['deadline_margin'])}: must be seconds from 0 to "
                            f"{MAX_SECONDS:g}, or a span such as \"90s\", \"15m\", \"2h\"")
            margin = 0.0
    cfg = Config(
        path=path, modules=tuple(modules), graph=a_path("graph", "must be a file path, not empty"),
        runner=want("runner", str, rule="must be a runner name") or "threads",
        workers=number("workers", 1, MAX_SLOTS, slots, whole=True),
        max_concurrency=number("max_concurrency", 1, MAX_SLOTS, slots, whole=True),
        address=want("address", str, rule="must be an address string"),
        retries=number("retries", 0, MAX_RETRIES, f"must be a whole number from 0 to {MAX_RETRIES}", whole=True),
        retry_delay=number("retry_delay", 0, MAX_SECONDS,
                           f"must be a number of seconds from 0 to {MAX_SECONDS:g}"),
        timeout=number("timeout", 0, MAX_SECONDS, f"must be a number of seconds > 0, at most {MAX_SECONDS:g}",
                       low_open=True),
        state_dir=a_path("state_dir", "must be a folder path, not empty") or ".critpath",
        json_report=a_path("json_report", "must be a file path, not empty"),
        time_scale=float(number("time_scale", 0, MAX_TIME_SCALE, "must be a finite number > 0, e.g. 0.1 to run "
                                "ten times faster", low_open=True) or 1.0),
        select=want("select", str, rule="must be a selection string"),
        secrets=tuple(dict.fromkeys(secrets)),
        cpu_aware=_flag(data, "cpu_aware", problems),
        shared_pools=_flag(data, "shared_pools", problems),
        history_runs=number("history_runs", 1, 100_000, "must be a whole number of runs from 1 to 100000",
                            whole=True) or 50,
        deadline=deadline, deadline_margin=margin,
        on_deadline_risk=want("on_deadline_risk", str, lambda v: bool(v.strip()) and "\0" not in v,
                              "must be a shell command, not empty"),
        ship=_flag(data, "ship", problems, default=True),
        requirements=tuple(dict.fromkeys(r.strip() for r in requirements)),
        pools={k: v for k, v in pools.items() if is_pool_limit(v)},
        schedule=dict(schedule),
        serve_collision=want("serve_collision", str, lambda v: v in COLLISIONS,
                             'must be "queue" (wait for the running refresh) or "skip"') or "queue",
        debounce=number("debounce", 0, MAX_SECONDS, DEBOUNCE_RULE, low_open=True) or DEFAULT_DEBOUNCE,
        watch=_watch_pairs(data.get("watch", []), problems),
    )
    if problems:
        head = f"{path}: " + (problems[0] if len(problems) == 1 else f"{len(problems)} problems:\n  - "
                              + "\n  - ".join(problems))
        raise CritpathError(head)
    return cfg


def is_debounce(value) -> bool:
    """A debounce (seconds): a finite number > 0, at most MAX_SECONDS."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and check_number(
        value, 0, MAX_SECONDS, False, True)


def _watch_pairs(pairs, problems: list[str]) -> tuple[dict, ...]:
    """``[[watch]]``: tables of ``path`` (a folder), ``service`` and an optional ``debounce``."""
    rule = ('must be tables [[watch]] with path = "landing/folder", service = "name" and optionally '
            "debounce = seconds")
    if not isinstance(pairs, list) or not all(isinstance(t, dict) for t in pairs):
        problems.append(f"watch = {show(pairs)}: {rule}")
        return ()
    out = []
    for i, t in enumerate(pairs, 1):
        bad = sorted(set(t) - {"path", "service", "debounce"})
        path, service = t.get("path"), t.get("service")
        if bad:
            problems.append(f"watch #{i}: unknown key {bad[0]!r}{did_you_mean(bad[0], ['path', 'service', 'debounce'])}")
        elif not isinstance(path, str) or not path.strip() or "\0" in path:
            problems.append(f"watch #{i}: path = {show(path)}: must be a folder path, not empty")
        elif not isinstance(service, str) or not service.strip():
            problems.append(f"watch #{i}: service = {show(service)}: must be a service name")
        elif "debounce" in t and not is_debounce(t["debounce"]):
            problems.append(f"watch #{i}: debounce = {show(t['debounce'])}: {DEBOUNCE_RULE}")
        else:
            out.append({"path": path, "service": service, **({"debounce": float(t["debounce"])}
                                                              if "debounce" in t else {})})
    return tuple(out)
