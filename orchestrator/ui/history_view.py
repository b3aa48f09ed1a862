"""``critpath history``: per service, what history holds and which estimate the planner will use.

JSON keys (public): ``{"file", "runs", "services": {name: {"runs", "attempts", "successes", "p50_s",
"p90_s", "last_s", "last_outcome", "cpu_share", "estimate_s", "estimate_source"}}, "background":
{runner: {"runs", "cores"}}}``: ``background`` is, per runner, how many recent runs here measured the
machine's other load and the median cores it kept busy (what the machine model takes off the cores).
"""
from __future__ import annotations

import statistics

from ..inputs.history import History
from ..planning.estimates import background, estimate
from ..planning.graph import Graph


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def summarise(history: History, graph: Graph | None, names: list[str], runner: str | None) -> dict:
    rows = history.rows(names or None)
    observed = history.observed(names or None)
    by_service: dict[str, list[dict]] = {}
    for r in rows:
        by_service.setdefault(r["service"], []).append(r)
    wanted = names or sorted(set(by_service) | (set(graph.names) if graph is not None else set()))
    out = {}
    for name in wanted:
        mine = by_service.get(name, [])
        ok = observed.get(name, [])
        durations = [o.duration_s for o in ok]
        shares = [o.cpu_s / o.duration_s for o in ok if o.cpu_s is not None and o.duration_s > 0]
        last = mine[-1] if mine else None
        entry = {
            "runs": len({r["run_id"] for r in mine}), "attempts": len(mine), "successes": len(ok),
            "p50_s": _quantile(durations, 0.5), "p90_s": _quantile(durations, 0.9),
            "last_s": (last["end"] - last["start"]) if last and last["start"] is not None and last["end"] is not None
            else None,
            "last_outcome": last["outcome"] if last else None,
            "cpu_share": statistics.median(shares) if shares else None,
            "estimate_s": None, "estimate_source": None,
        }
        if graph is not None and name in graph.services:
            e = estimate(graph.services[name], ok, runner)
            entry.update(estimate_s=e.seconds, estimate_source=e.source)
        out[name] = entry
    loads = {r: history.background(r) for r in history.load_runners()}
    return {"file": str(history.path), "runs": history.runs(), "services": out,
            "background": {r: {"runs": len(v), "cores": background(v)} for r, v in loads.items() if v}}


def render(data: dict) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"history: {data['runs']} run(s) in {data['file']}", title_justify="left")
    for col in ("service", "runs", "p50 s", "p90 s", "last s", "last", "CPU share", "planner uses"):
        table.add_column(col, justify="left" if col in ("service", "last", "planner uses") else "right")

    def num(x, fmt="{:.2f}"):
        return "" if x is None else fmt.format(x)

    for name, s in data["services"].items():
        uses = "" if s["estimate_source"] is None else f"{s['estimate_s']:.2f} s ({s['estimate_source']})"
        table.add_row(name, str(s["runs"]), num(s["p50_s"]), num(s["p90_s"]), num(s["last_s"]),
                      s["last_outcome"] or "", num(s["cpu_share"], "{:.0%}"), uses)
    console = Console(width=140, record=True)
    with console.capture() as cap:
        console.print(table)
        for runner, b in data.get("background", {}).items():
            console.print(f"background on {runner}: {b['cores']:.2f} cores busy with other work "
                          f"(median of {b['runs']} run(s) here), taken off the cores by the machine model")
    return cap.get()
