"""Loaders: turn a graph file, a workflow trace or a Python module into a ``Graph``.

Three inputs, one output:

  * a graph file, ``.json`` or ``.toml``: ``{"services": [{...}, ...], "pools": {"warehouse": 4}}``;
  * a WfCommons WfFormat trace (a ``.json`` file whose top level has ``"workflow"``): one synthetic
    service per task, named by task id, sleeping its recorded ``runtimeInSeconds``;
  * Python modules of ``@service`` functions (``load_module("services.demo")``), with an optional
    module-level ``POOLS = {"warehouse": 4}``.

Each goes read -> parse -> check fields -> build:

  * Reading and parsing stop at the first error, because the parser cannot go on: one line that
    names the file, the line and column, and the problem (``graph.json line 3, column 5: ...``).
  * Field checks never trust the shape. Every field goes through a checker that returns the
    converted value or records a problem naming the service and the fix, so malformed input
    (lists for objects, strings for numbers, deep junk, huge ints) cannot raise a TypeError or
    KeyError. All problems of all services are collected and raised once, as one ``GraphError``.
    ``bool`` is an ``int`` in Python; numeric fields reject it on purpose (``"retries": true``).
  * Module services are checked by the same code, from their records, so ``@service(retries=-1)``
    is reported like ``"retries": -1`` in a file.

Graph-level problems (unknown dependencies, cycles, duplicate names, pools without a limit, a
service with neither ``call`` nor ``duration``) are ``validate``'s job: a loaded graph may still be
invalid, and the loaders do not import the functions that services call.

``time_scale`` multiplies synthetic durations and estimates (``Service.scaled``) after the checks.
"""
from __future__ import annotations

import importlib
import json
import math
import re
import sys
import tomllib
from dataclasses import fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping

from ..planning.errors import CritpathError, GraphError, did_you_mean
from ..planning.errors import show as _show
from ..planning.graph import Graph
from ..planning.model import KINDS, Service, services_in
from ..planning.ranges import MAX_RETRIES, MAX_SECONDS, pool_limit_problem
from ..planning.ranges import is_number as _is_number

FIELDS = tuple(f.name for f in fields(Service))
TOP_LEVEL = ("services", "pools")
SUFFIXES = (".json", ".toml")


def _a(value: Any) -> str:
    """'a list', 'an object', ... in the file's terms, for 'expected X, got Y' messages."""
    kinds = {bool: "a boolean", dict: "an object", list: "a list", tuple: "a list", str: "a string",
             int: "a number", float: "a number", type(None): "null"}
    return kinds.get(type(value), f"a {type(value).__name__}")


def _finite(v: int | float) -> bool:
    return isinstance(v, int) or math.isfinite(v)  # math.isfinite overflows on huge ints


# -- field checkers: (who, key, value, problems) -> converted value ------------------------
def _seconds(minimum: str, optional: bool = True) -> Callable:
    def check(who: str, key: str, v: Any, problems: list[str]):
        if v is None and optional:
            return None
        if not _is_number(v):
            problems.append(f"{who}: {key!r} must be a number of seconds, got {_show(v)} ({_a(v)})")
        elif not _finite(v):
            problems.append(f"{who}: {key!r} must be a finite number of seconds, got {_show(v)}")
        elif v > MAX_SECONDS:
            problems.append(f"{who}: {key!r} is {_show(v)} s, over the limit of {MAX_SECONDS:g} s; "
                            "give it in seconds")
        elif v < 0 or (minimum == "> 0" and v == 0):
            problems.append(f"{who}: {key!r} must be {minimum} seconds, got {_show(v)}"
                            + ("; leave it out for no timeout" if key == "timeout" else ""))
        else:
            return float(v)
        return None

    return check


def _count(who: str, key: str, v: Any, problems: list[str]):
    if not _is_number(v) or isinstance(v, float) and not (_finite(v) and v.is_integer()):
        problems.append(f"{who}: {key!r} must be a whole number, got {_show(v)} ({_a(v)})")
    elif not 0 <= v <= MAX_RETRIES:
        problems.append(f"{who}: {key!r} must be between 0 and {MAX_RETRIES}, got {_show(v)}")
    else:
        return int(v)
    return 0


def _text(who: str, key: str, v: Any, problems: list[str]):
    if v is None:
        return None
    if not isinstance(v, str) or not v.strip():
        problems.append(f"{who}: {key!r} must be a non-empty string, got {_show(v)} ({_a(v)})")
        return None
    return v


def _names(who: str, key: str, v: Any, problems: list[str]):
    what = {"after": "service names", "tags": "strings"}.get(key, "task ids")
    if isinstance(v, str):
        problems.append(f"{who}: {key!r} takes a list of {what}; write [{json.dumps(v)}]")
        return ()
    if not isinstance(v, (list, tuple)):
        problems.append(f"{who}: {key!r} must be a list of {what}, got {_show(v)} ({_a(v)})")
        return ()
    bad = [x for x in v if not isinstance(x, str) or not x.strip()]
    if bad:
        problems.append(f"{who}: {key!r} must be a list of non-empty {what}, "
                        f"but it holds {_show(bad[0])} ({_a(bad[0])})")
        return ()
    return tuple(v)


def _params(who: str, key: str, v: Any, problems: list[str]):
    if not isinstance(v, Mapping):
        problems.append(f"{who}: 'params' must be an object of keyword arguments, "
                        f"got {_show(v)} ({_a(v)})")
        return MappingProxyType({})
    bad = [k for k in v if not isinstance(k, str)]
    if bad:
        problems.append(f"{who}: 'params' keys are keyword-argument names and must be strings, "
                        f"got {_show(bad[0])}")
    return MappingProxyType(dict(v))


def _kind(who: str, key: str, v: Any, problems: list[str]):
    if v not in KINDS or not isinstance(v, str):
        problems.append(f"{who}: 'kind' must be one of {', '.join(map(repr, KINDS))}, got {_show(v)}"
                        + (did_you_mean(v, KINDS) if isinstance(v, str) else ""))
        return "sleep"
    return v


_CHECKS: dict[str, Callable] = {
    "after": _names, "tags": _names, "call": _text, "pool": _text, "params": _params,
    "kind": _kind, "retries": _count, "duration": _seconds(">= 0"), "estimate": _seconds(">= 0"),
    "retry_delay": _seconds(">= 0", optional=False), "timeout": _seconds("> 0"),
}
assert set(_CHECKS) == set(FIELDS) - {"name"}, "every Service field needs a checker"
_runtime = _seconds(">= 0", optional=False)


def _name_problem(name: Any) -> str | None:
    """Why ``name`` cannot name a service, or None. ``--select`` gives ',' and '+' a meaning."""
    if not isinstance(name, str) or not name.strip():
        return f"must be a non-empty string, got {_show(name)} ({_a(name)})"
    if name != name.strip() or not name.isprintable():
        return f"{name!r} has surrounding spaces or control characters; remove them"
    if "," in name or name.startswith(("+", "tag:")) or name.endswith("+"):
        return (f"{name!r} cannot be selected with --select, where ',', a leading or trailing '+' "
                "and 'tag:' have a meaning; rename it")
    return None


def _check_service(raw: Any, where: str, problems: list[str]) -> Service | None:
    """The service described by ``raw`` (an object from a file, or a record's fields), or None
    after appending every problem found to ``problems``."""
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: expected an object like {{\"name\": \"load_orders\", "
                        f"\"after\": []}}, got {_show(raw)} ({_a(raw)})")
        return None
    before = len(problems)
    name = raw.get("name")
    why = _name_problem(name)
    if why:
        problems.append(f"{where}: 'name' {why}")
    who = where if why else f"service {name!r}"
    values = {}
    for key, value in raw.items():
        if key in _CHECKS:
            values[key] = _CHECKS[key](who, key, value, problems)
        elif key != "name":
            hint = did_you_mean(key, FIELDS) if isinstance(key, str) else ""
            problems.append(f"{who}: unknown field {_show(key)}{hint}"
                            + ("" if hint else f"; known fields: {', '.join(FIELDS)}"))
    if len(problems) > before:
        return None
    return Service(name=name, **values)


def _check_pools(raw: Any, where: str, problems: list[str]) -> dict[str, int]:
    if not isinstance(raw, Mapping):
        problems.append(f"{where} must be an object of pool limits like {{\"warehouse\": 4}}, "
                        f"got {_show(raw)} ({_a(raw)})")
        return {}
    pools = {}
    for name, limit in raw.items():
        if not isinstance(name, str) or not name.strip():
            problems.append(f"{where}: pool names must be non-empty strings, got {_show(name)}")
        elif (problem := pool_limit_problem(name, limit)) is not None:
            problems.append(f"{where}: {problem}")
        else:
            pools[name] = limit
    return pools


# -- graph files ----------------------------------------------------------------------------
def load_graph_file(path: str | Path, time_scale: float = 1.0) -> Graph:
    """The graph in a ``.json``/``.toml`` graph file or a WfFormat ``.json`` trace (not validated)."""
    scale = _check_scale(time_scale)
    shown, p = str(path), Path(path)
    suffix = p.suffix.lower()
    if suffix not in SUFFIXES:
        raise CritpathError(f"graph file {shown!r}: cannot tell its format from the suffix "
                            f"{p.suffix or '(none)'!s}; use a .json or .toml file "
                            "(or --module for Python services)")
    text = _read(p, shown)
    data, problems = _parse_json(text, shown) if suffix == ".json" else (_parse_toml(text, shown), [])
    if isinstance(data, dict) and "workflow" in data and "services" not in data:
        services, pools = _trace_services(data["workflow"], problems), {}
    else:
        services, pools = _document(data, problems)
    return _finish(services, pools, scale, shown, problems)


def _read(p: Path, shown: str) -> str:
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise CritpathError(f"graph file {shown!r} not found") from None
    except IsADirectoryError:
        raise CritpathError(f"graph file {shown!r} is a directory; give a .json or .toml file") from None
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        raise CritpathError(f"graph file {shown!r}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise CritpathError(f"{shown} line {line}: not UTF-8 text (byte {raw[e.start]:#04x}); "
                            "save the file as UTF-8") from None
    if not text.strip():
        raise CritpathError(f"graph file {shown!r} is empty; it needs a \"services\" list "
                            "(or a WfFormat \"workflow\")")
    return text


def _parse_json(text: str, shown: str) -> tuple[Any, list[str]]:
    """The parsed document and the keys it repeats (problems, reported with the others)."""
    duplicates: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict:
        # json.loads would keep the last of two equal keys without a word; say so instead
        out: dict = {}
        for k, v in items:
            if k in out:
                duplicates.append(f"the key {k!r} appears twice in one object; keep one")
            out[k] = v
        return out

    try:
        data = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as e:
        raise CritpathError(f"{shown} line {e.lineno}, column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise CritpathError(f"{shown}: nested too deeply to read; a graph file is a few levels deep") from None
    except ValueError:  # an integer longer than int_max_str_digits
        m = re.search(r"\d{4000,}", text)
        line = f" line {text.count(chr(10), 0, m.start()) + 1}" if m else ""
        raise CritpathError(f"{shown}{line}: a number has thousands of digits; "
                            "no field takes such a number") from None
    return data, duplicates


def _parse_toml(text: str, shown: str) -> Any:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", msg, re.S)
        if m:
            raise CritpathError(f"{shown} line {m[2]}, column {m[3]}: {m[1]}") from None
        raise CritpathError(f"{shown}: {msg.replace('(at end of document)', 'at the end of the file')}") from None
    except RecursionError:
        raise CritpathError(f"{shown}: nested too deeply to read; a graph file is a few levels deep") from None
    except ValueError:
        raise CritpathError(f"{shown}: a number has thousands of digits; no field takes such a number") from None


def _document(data: Any, problems: list[str]) -> tuple[list[Service], dict[str, int]]:
    """Services and pools of a graph document (the JSON object or the TOML tables)."""
    if not isinstance(data, dict):
        problems.append(f"the top level must be an object with a \"services\" list, got {_a(data)}")
        return [], {}
    for key in data:
        if key not in TOP_LEVEL:
            problems.append(f"unknown top-level field {key!r}{did_you_mean(key, TOP_LEVEL)}; "
                            "a graph file has \"services\" and \"pools\"")
    raw = data.get("services")
    if not isinstance(raw, list) or not raw:
        got = "it is missing" if raw is None else f"got {_show(raw)} ({_a(raw)})"
        problems.append(f"\"services\" must be a non-empty list of services ([[services]] tables in "
                        f"TOML); {got}")
        raw = []
    services = [_check_service(s, f"services[{i}]", problems) for i, s in enumerate(raw)]
    pools = _check_pools(data.get("pools", {}), "\"pools\"", problems)
    return [s for s in services if s is not None], pools


def _trace_services(wf: Any, problems: list[str]) -> list[Service]:
    """WfFormat: schema 1.5 splits each task in ``specification.tasks`` (id, parents, children)
    and ``execution.tasks`` (id, runtimeInSeconds); older schemas keep one ``workflow.tasks``
    list with ``runtimeInSeconds`` or ``runtime`` inline and may name parents by ``name``."""
    spec = wf.get("specification") if isinstance(wf, dict) else None
    runtimes: dict[str, Any] = {}
    if isinstance(spec, dict) and "tasks" in spec:
        tasks, where = spec["tasks"], "workflow.specification.tasks"
        execution = wf.get("execution")
        runs = execution.get("tasks") if isinstance(execution, dict) else None
        for run in runs if isinstance(runs, list) else []:
            if isinstance(run, dict) and isinstance(run.get("id"), str):
                runtimes.setdefault(run["id"], run.get("runtimeInSeconds"))
    elif isinstance(wf, dict) and "tasks" in wf:
        tasks, where = wf["tasks"], "workflow.tasks"
    else:
        problems.append("a WfFormat trace needs \"workflow\": {\"specification\": {\"tasks\": [...]}} "
                        "(schema 1.5) or \"workflow\": {\"tasks\": [...]} (older schemas)")
        return []
    if not isinstance(tasks, list) or not tasks:
        problems.append(f"{where} must be a non-empty list of tasks, got {_show(tasks)}")
        return []
    key_of: dict[str, str] = {}  # id and name -> the task's key, to resolve parents given by name
    rows = []
    for i, t in enumerate(tasks):
        key = t.get("id", t.get("name")) if isinstance(t, dict) else None
        why = _name_problem(key)
        if why:
            problems.append(f"{where}[{i}]: the task id {why}")
            continue
        for alias in (t.get("name"), key):
            if isinstance(alias, str):
                key_of.setdefault(alias, key)
        rows.append((key, t))
    after: dict[str, dict[str, None]] = {key: {} for key, _ in rows}
    for key, t in rows:
        # parents and children describe the same edges; take both in case a trace fills only one
        for rel in ("parents", "children"):
            refs = _names(f"task {key!r}", rel, t.get(rel, []), problems)
            for ref in refs:
                ref = ref if ref in after else key_of.get(ref, ref)
                if rel == "parents":
                    after[key][ref] = None
                elif ref in after:
                    after[ref][key] = None
    services = []
    for key, t in rows:
        runtime = runtimes.get(key, t.get("runtimeInSeconds", t.get("runtime")))
        if runtime is None:
            problems.append(f"task {key!r}: no runtimeInSeconds recorded; the trace is incomplete")
            continue
        seconds = _runtime(f"task {key!r}", "runtimeInSeconds", runtime, problems)
        if seconds is not None:
            services.append(Service(name=key, after=tuple(after[key]), duration=seconds))
    return services


# -- Python modules -------------------------------------------------------------------------
def load_module(import_path: str, time_scale: float = 1.0) -> Graph:
    """The ``@service`` functions of one or more modules ("services.demo,services.more")."""
    scale = _check_scale(time_scale)
    names = [n.strip() for n in import_path.split(",")] if isinstance(import_path, str) else []
    if not names or not all(names):
        raise CritpathError(f"--module {import_path!r}: give an import path such as 'services.demo' "
                            "(several separated by commas)")
    records: dict[int, Service] = {}  # by identity: a service re-exported by a second module counts once
    pools: dict[str, int] = {}
    problems: list[str] = []
    for name in names:
        module = _import(name)
        found = services_in(vars(module))
        if not found:
            raise CritpathError(f"--module {name!r}: no @service functions in it "
                                f"({getattr(module, '__file__', None) or 'no file'}); decorate them "
                                "with @service from orchestrator.model")
        records.update((id(s), s) for s in found)
        declared = _check_pools(getattr(module, "POOLS", {}), f"{name}.POOLS", problems)
        for pool, limit in declared.items():
            if pools.setdefault(pool, limit) != limit:
                problems.append(f"pool {pool!r} has limit {pools[pool]} in one module and {limit} in "
                                f"{name!r}; give it one limit")
    services = []
    for s in records.values():
        raw = {f: getattr(s, f) for f in FIELDS}
        checked = _check_service(raw, f"service {_show(s.name)} in {_module_of(s)}", problems)
        if checked is not None:
            services.append(checked)
    return _finish(services, pools, scale, ",".join(names), problems)


def _module_of(s: Service) -> str:
    return s.call.partition(":")[0] if isinstance(s.call, str) else "its module"


def _import(name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and (name == e.name or name.startswith(e.name + ".")):
            raise CritpathError(f"--module {name!r}: cannot import it (ModuleNotFoundError: {e}); "
                                "check the import path and that its folder is on PYTHONPATH") from None
        raise CritpathError(f"--module {name!r}: cannot import it: it imports {e.name!r}, which is "
                            f"not installed (ModuleNotFoundError: {e}); install it or fix that import") from None
    except (Exception, SystemExit) as e:
        detail = " ".join(str(e).split())
        raise CritpathError(f"--module {name!r}: importing it raised {type(e).__name__}: {detail}; "
                            f"fix the module (python -c 'import {name}' shows the traceback)") from None


# -- shared ---------------------------------------------------------------------------------
def _check_scale(time_scale: Any) -> float:
    if not (_is_number(time_scale) and _finite(time_scale) and 0 < time_scale <= sys.float_info.max):
        raise CritpathError(f"--time-scale {_show(time_scale)}: must be a finite number > 0 "
                            "(1 = recorded durations, 0.1 = ten times faster)")
    return float(time_scale)


def _finish(services: list[Service], pools: dict[str, int], scale: float, source: str,
            problems: list[str]) -> Graph:
    if scale != 1.0:
        services = [s.scaled(scale) for s in services]
        for s in services:
            for key in ("duration", "estimate"):
                v = getattr(s, key)
                if v is not None and v > MAX_SECONDS:
                    problems.append(f"service {s.name!r}: {key!r} times --time-scale {scale:g} is "
                                    f"{v:g} s, over the limit of {MAX_SECONDS:g} s; use a smaller "
                                    "--time-scale")
    if problems:
        raise GraphError(problems, source)
    return Graph(services, pools, source)
