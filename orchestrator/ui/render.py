"""Text rendering of plans for people (``critpath plan``), with rich tables."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..planning.planner import Plan


def print_plan(p: Plan, console: Console | None = None, top: int = 15, source: str | None = None) -> None:
    console = console or Console()
    g = p.graph
    console.print(f"[bold]{len(g)} services[/], {len(g.edges)} edges, max concurrency {p.max_concurrency}"
                  + (f" ({source})" if source else "") + (f", source {g.source}" if g.source else ""))
    console.print(f"critical path [bold]{p.critical_path_s:.2f} s[/]: " + " -> ".join(p.critical_path))
    console.print(f"total work {p.total_work_s:.2f} s; lower bound [bold]{p.lower_bound_s:.2f} s[/] "
                  f"(set by {p.constraint}); simulated makespan [bold]{p.simulated_makespan_s:.2f} s[/] "
                  "(slots only, no contention, no overhead)"
                  + ("; dispatch order improved by forward-backward justification" if p.justified else ""))
    if p.predicted_makespan_s is not None and p.machine is not None:
        counts = {k: p.estimate_source.count(k) for k in ("history", "declared", "synthetic", "default")}
        said = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
        ratio = p.predicted_makespan_s / p.lower_bound_s if p.lower_bound_s else 1.0
        console.print(f"predicted makespan [bold]{p.predicted_makespan_s:.2f} s[/] ({ratio:.2f} x bound) "
                      f"on {p.machine.cores:g} cores "
                      f"({p.machine.source}; CPU work {p.cpu_work_s:.2f} s"
                      + (f"; {p.machine.background:.2f} of them busy with other work, from history"
                         if p.machine.background else "")
                      + (", cpu-aware" if p.cpu_aware else "") + f"); estimates: {said}")
    if p.pool_bounds_s:
        worst = max(p.pool_bounds_s, key=p.pool_bounds_s.get)
        console.print(f"most constraining pool: [bold]{worst}[/] (limit {g.pools[worst]}, "
                      f"needs at least {p.pool_bounds_s[worst]:.2f} s)")
    table = Table(title=f"highest priority services (top {min(top, len(g))})", title_justify="left")
    for col in ("service", "estimate s", "priority s", "pool", "after"):
        table.add_column(col, justify="right" if col.endswith(" s") else "left")
    order = sorted(range(len(g)), key=lambda i: (-p.priority[i], g.names[i]))[:top]
    for i in order:
        s = g.services[g.names[i]]
        ups = [g.names[u] for u in g.preds[i]]
        table.add_row(s.name, f"{p.est[i]:.2f}", f"{p.priority[i]:.2f}", s.pool or "",
                      ", ".join(ups[:3]) + (f" +{len(ups) - 3}" if len(ups) > 3 else ""))
    console.print(table)
