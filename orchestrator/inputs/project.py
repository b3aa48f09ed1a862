"""Finding the project's graph: flags first, then ``critpath.toml``, then the bundled refresh.

``load_inputs`` is what ``critpath run``, ``plan`` and every served refresh call, so a
graph means the same thing however it is started. ``select`` applies a selection and
says where a bad one came from (``--select`` or ``select`` in the config).
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import replace

from ..planning.errors import CritpathError, show
from ..planning.graph import Graph
from ..planning.ranges import MAX_POOL_LIMIT, is_pool_limit
from ..planning.selection import SelectionError
from ..planning.selection import select as _select
from .config import DEFAULT_MODULE, Config, load_config
from .loaders import load_graph_file, load_module


def parse_pool_flags(items) -> dict[str, int]:
    """``--pool NAME=N`` (repeatable) as ``{NAME: N}``."""
    limits: dict[str, int] = {}
    for item in items:
        name, sep, value = item.partition("=")
        # ASCII digits only: str.isdigit() accepts '²', which int() then refuses
        n = re.fullmatch(r"\s*([0-9]{1,7})\s*", value)
        if not sep or not name.strip() or not n or not is_pool_limit(int(n[1])):
            raise CritpathError(f"--pool {show(item)}: write NAME=N with N a whole number from 1 to "
                                f"{MAX_POOL_LIMIT}, e.g. --pool warehouse=4")
        limits[name] = int(n[1])
    return limits


def load_inputs(graph_file, modules, config_path, pools, time_scale, default_retries=None,
                default_timeout=None) -> tuple[Graph, Config]:
    """The graph named by flags, else by the config, else the bundled refresh; with overrides applied."""
    cfg = load_config(config_path)
    if os.getcwd() not in sys.path:  # service modules live in the user's project folder
        sys.path.insert(0, os.getcwd())
    if graph_file and modules:
        raise CritpathError("give either --graph or --module, not both")
    scale = time_scale if time_scale is not None else cfg.time_scale
    if graph_file or (not modules and cfg.graph):
        graph = load_graph_file(graph_file or cfg.graph, scale)
    else:
        graph = load_module(modules or ",".join(cfg.modules or (DEFAULT_MODULE,)), scale)
    limits = {**graph.pools, **cfg.pools, **parse_pool_flags(pools)}
    retries = default_retries if default_retries is not None else cfg.retries
    timeout = default_timeout if default_timeout is not None else cfg.timeout
    services = list(graph.declared)
    if retries is not None or timeout is not None or cfg.retry_delay is not None:
        services = [replace(s,
                            retries=s.retries or (retries or 0),
                            retry_delay=s.retry_delay or (cfg.retry_delay or 0.0),
                            timeout=s.timeout or timeout) for s in services]
    return Graph(services, limits, graph.source), cfg


def select(graph: Graph, flag: str | None, cfg: Config | None = None) -> Graph:
    """``graph`` narrowed by ``--select`` (``flag``), else by ``select`` in the config."""
    expr, origin = (flag, "--select") if flag else ((cfg.select, "select") if cfg else (None, ""))
    try:
        return _select(graph, expr)
    except SelectionError as exc:
        hint = "; run 'critpath plan' to list the services" if exc.problem.startswith("unknown service") else ""
        raise CritpathError(f"{origin} {exc.term!r}: {exc.problem}{hint}") from None
