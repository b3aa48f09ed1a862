"""Graph validation: every problem that would stop a run, found up front and reported at once.

``validate(graph)`` raises one ``GraphError`` listing (sorted, counted) every problem it finds:

  * duplicate names (``graph.declared`` keeps them; the graph index keeps only the first);
  * a service that runs after itself, or after an unknown service (with a suggestion);
  * cycles, each in order with its first service repeated (``cycle a -> b -> a``);
  * pools: a limit that is not a whole number >= 1, a service in a pool with no limit;
  * what runs: neither ``call`` nor ``duration``, or both; a ``call`` not of the form
    ``module:function``; with ``check_imports``, a module that does not import or lacks the
    function. Workers import ``call`` by this path, so a nested function (``<locals>``) is an error.

Cost is linear in services + edges. Cycles are searched only when the topological sort fails,
imports are cached per module and per call, and name suggestions (``difflib``, linear in the
number of services each) are made for the first few unknown names only (fewer in big graphs),
so even a 100,000-service graph full of typos validates in a second or so.
"""
from __future__ import annotations

import importlib
from collections import Counter
from typing import Any

from .errors import GraphError, did_you_mean
from .graph import Graph
from .ranges import pool_limit_problem

#: Unknown names that get a "did you mean" suggestion. Each one scans every service name with
#: difflib (2-20 microseconds a name), so big graphs get fewer: about SUGGESTION_BUDGET names
#: scanned in all, but always one, so a single typo in a huge graph still gets its suggestion.
MAX_SUGGESTIONS = 25
SUGGESTION_BUDGET = 50_000
_LISTED = 3  # services named in a grouped message before "and N more"


def validate(graph: Graph, check_imports: bool = True) -> None:
    """Raise ``GraphError`` with every problem in ``graph``; return None when it can run."""
    problems = [*_duplicates(graph), *self_loops(graph), *_dependencies(graph), *_pools(graph),
                *_work(graph, check_imports)]
    if graph.topo_order() is None:
        problems += cycle_problems(graph)
    if problems:
        raise GraphError(problems, graph.source)


def cycle_problems(graph: Graph) -> list[str]:
    """The one wording of a cycle (also raised by ``make_plan`` for a graph never validated)."""
    return [f"cycle {' -> '.join(c)}: remove one of these dependencies" for c in graph.find_cycles()]


def self_loops(graph: Graph) -> list[str]:
    return [f"service {s.name!r} runs after itself: remove {s.name!r} from its 'after'"
            for s in graph.declared if s.name in s.after]


def _duplicates(graph: Graph) -> list[str]:
    if len(graph.declared) == len(graph.names):
        return []
    counts = Counter(s.name for s in graph.declared)
    return [f"service {n!r} is declared {k} times; names must be unique: rename or remove the copies"
            for n, k in counts.items() if k > 1]


def _dependencies(graph: Graph) -> list[str]:
    problems, unknown = [], []
    index = graph.index
    for s in graph.declared:
        for a in s.after:
            if a != s.name and a not in index:
                unknown.append((s.name, a))
    # sorted, so the same typos get suggestions whatever the declaration order
    k = max(1, min(MAX_SUGGESTIONS, SUGGESTION_BUDGET // max(1, len(graph.names))))
    suggest = {a: did_you_mean(a, graph.names) for a in sorted({a for _, a in unknown})[:k]}
    for name, a in unknown:
        problems.append(f"service {name!r} runs after unknown service {a!r}{suggest.get(a, '')}; "
                        "fix the name or remove it from 'after'")
    return problems


def _pools(graph: Graph) -> list[str]:
    problems = []
    for pool, limit in graph.pools.items():
        if (problem := pool_limit_problem(pool, limit)) is not None:
            problems.append(problem)
    users: dict[str, list[str]] = {}
    for s in graph:
        if s.pool is not None and s.pool not in graph.pools:
            users.setdefault(s.pool, []).append(s.name)
    for pool, names in users.items():
        who = ", ".join(map(repr, names[:_LISTED]))
        more = f" and {len(names) - _LISTED} more" if len(names) > _LISTED else ""
        verb = "uses" if len(names) == 1 else "use"
        problems.append(
            f"service{'s' if len(names) > 1 else ''} {who}{more} {verb} pool {pool!r}, which has no "
            f"limit{did_you_mean(pool, graph.pools)}: add {{{pool!r}: N}} to the pools "
            "(\"pools\" in a graph file, POOLS in a module) or fix the pool name")
    return problems


def _work(graph: Graph, check_imports: bool) -> list[str]:
    problems = []
    checked: dict[str, str | None] = {}  # call -> problem, so 100,000 services with one call import once
    modules: dict[str, Any] = {}
    for s in graph:
        if s.call is None and s.duration is None:
            problems.append(f"service {s.name!r} has neither 'call' nor 'duration': give it a "
                            "\"call\": \"module:function\" to run, or a synthetic \"duration\" in seconds")
        elif s.call is not None and s.duration is not None:
            problems.append(f"service {s.name!r} has both 'call' and 'duration': keep \"call\" to run "
                            "a function or \"duration\" for a synthetic service, not both")
        if s.call is None:
            continue
        key = s.call if isinstance(s.call, str) else repr(s.call)
        if key not in checked:
            checked[key] = _call_problem(s.call, check_imports, modules)
        if checked[key]:
            problems.append(f"service {s.name!r}: {checked[key]}")
    return problems


def _call_problem(call: Any, check_imports: bool, modules: dict[str, Any]) -> str | None:
    """Why ``call`` cannot be imported by a worker, or None."""
    if not isinstance(call, str) or call.count(":") != 1:
        return f"call {call!r} is not of the form 'module:function' (e.g. 'services.demo:load_orders')"
    module_name, _, qualname = call.partition(":")
    if "<locals>" in qualname:
        return (f"call {call!r} is a nested function, which worker processes cannot import: "
                "define it at module level")
    parts = module_name.split(".") + qualname.split(".")
    if not all(p.isidentifier() for p in parts):
        return f"call {call!r} is not of the form 'module:function' (e.g. 'services.demo:load_orders')"
    if not check_imports:
        return None
    if module_name not in modules:
        try:
            modules[module_name] = importlib.import_module(module_name)
        except (Exception, SystemExit) as e:
            modules[module_name] = f"{type(e).__name__}: {' '.join(str(e).split())}"
    obj = modules[module_name]
    if isinstance(obj, str):
        return (f"call {call!r}: cannot import module {module_name!r} ({obj}); check the module "
                "path and that its folder is on PYTHONPATH")
    where = module_name
    for attr in qualname.split("."):
        if not hasattr(obj, attr):
            names = [n for n in dir(obj) if not n.startswith("_")]
            return f"call {call!r}: {where!r} has no attribute {attr!r}{did_you_mean(attr, names)}"
        obj, where = getattr(obj, attr), f"{where}.{attr}"
    if not callable(obj):
        return f"call {call!r} is not callable (it is {type(obj).__name__!r}); point it at a function"
    return None
