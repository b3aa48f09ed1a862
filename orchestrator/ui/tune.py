"""``critpath tune``: predict every setting from history, recommend one, optionally verify and write it.

JSON (public): ``{"current": {...}, "recommended": {"max_concurrency", "pools", "cpu_aware",
"predicted_makespan_s"}, "candidates": [{"max_concurrency", "pools", "cpu_aware",
"predicted_makespan_s", "simulated_makespan_s"}, ...], "verified": [{..., "predicted_makespan_s",
"measured_makespan_s"}], "cores", "cores_source", "plot"}``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from ..execution.machines import planning_inputs
from ..inputs.history import History
from ..planning.errors import CritpathError
from ..planning.graph import Graph
from ..planning.tuning import Candidate, evaluate, recommend, sweep

#: successful attempts of every service history must hold before tune trusts its medians
NEEDED_RUNS = 2


@dataclass(frozen=True)
class Setting:
    max_concurrency: int
    pools: dict[str, int]
    cpu_aware: bool

    def to_json(self) -> dict:
        return {"max_concurrency": self.max_concurrency, "pools": dict(self.pools), "cpu_aware": self.cpu_aware}


def history_shortfall(graph: Graph, history: History | None) -> tuple[int, list[str]]:
    """(runs still needed, services short of them)."""
    observed = history.observed(graph.names) if history is not None else {}
    short = [n for n in graph.names if len(observed.get(n, ())) < NEEDED_RUNS]
    have = min((len(observed.get(n, ())) for n in graph.names), default=NEEDED_RUNS)
    return max(0, NEEDED_RUNS - have), short


def check_pools(graph: Graph, flags: tuple[str, ...]) -> None:
    used = {s.pool for s in graph if s.pool}
    for item in flags:
        name = item.partition("=")[0]
        if name not in used:
            from ..planning.errors import did_you_mean

            raise CritpathError(f"--pool {item!r}: no service of this graph uses pool {name!r}"
                                f"{did_you_mean(name, used)}; pools in use: {', '.join(sorted(used)) or 'none'}")


def predict_all(graph: Graph, runner: str, engine, history: History | None, current: Setting, max_limit: int,
                tolerance: float, workers: int | None = None) -> dict:
    """``workers``: the slots a local runner starts with when no ``engine`` is: on Dask they set how
    many services share each worker process's lock, one layout for every candidate."""
    inputs = planning_inputs(graph, runner, engine, history, workers=workers)
    cands = sweep(graph, inputs.estimates, inputs.machine, max_limit)
    now = evaluate(graph, inputs.estimates, inputs.machine, current.max_concurrency, current.pools, current.cpu_aware)
    best = recommend([*cands, now], tolerance)
    return {"current": now.to_json(), "recommended": best.to_json(),
            "candidates": [c.to_json() for c in cands], "verified": [],
            "cores": inputs.machine.cores, "cores_source": inputs.machine.source, "tolerance": tolerance}


def as_setting(c: dict | Candidate) -> Setting:
    d = c.to_json() if isinstance(c, Candidate) else c
    return Setting(d["max_concurrency"], dict(d["pools"]), d["cpu_aware"])


def table(result: dict) -> str:
    from rich.console import Console
    from rich.table import Table

    rec, cur = result["recommended"], result["current"]
    t = Table(title=f"predicted makespan on {result['cores']:g} cores ({result['cores_source']})",
              title_justify="left")
    for col in ("max concurrency", "pools", "cpu-aware", "predicted s", ""):
        t.add_column(col, justify="right" if col in ("max concurrency", "predicted s") else "left")
    def same(a: dict, b: dict) -> bool:
        return all(a[k] == b[k] for k in ("max_concurrency", "pools", "cpu_aware"))

    for c in sorted(result["candidates"], key=lambda c: (c["cpu_aware"], sorted(c["pools"].items()),
                                                         c["max_concurrency"])):
        mark = "recommended" if same(c, rec) else "current" if same(c, cur) else ""
        t.add_row(str(c["max_concurrency"]), ", ".join(f"{k}={v}" for k, v in sorted(c["pools"].items())),
                  "on" if c["cpu_aware"] else "off", f"{c['predicted_makespan_s']:.2f}", mark)
    console = Console(width=120, record=True)
    with console.capture() as cap:
        console.print(t)
    return cap.get()


def write_config(cfg_path: str | None, setting: Setting) -> tuple[Path, bool]:
    """The recommendation into critpath.toml (or the pyproject.toml table in use), keeping its
    comments and layout; returns (path, created)."""
    import tomlkit

    path = Path(cfg_path) if cfg_path else Path("critpath.toml")
    created = not path.exists()
    doc = tomlkit.document() if created else tomlkit.parse(path.read_text(encoding="utf-8"))
    table_ = doc
    if path.name == "pyproject.toml":
        table_ = doc.setdefault("tool", tomlkit.table()).setdefault("critpath", tomlkit.table())
    table_["max_concurrency"] = setting.max_concurrency
    table_["cpu_aware"] = setting.cpu_aware
    if setting.pools:
        pools = table_.setdefault("pools", tomlkit.table())
        for name, limit in sorted(setting.pools.items()):
            pools[name] = limit
    if created:
        doc.add(tomlkit.comment("written by 'critpath tune --write'"))
    path.write_text(tomlkit.dumps(doc), encoding="utf-8")
    return path, created


def say(message: str) -> None:
    click.echo(f"critpath: {message}", err=True)
