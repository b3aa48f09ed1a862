"""Text rendering of plans for people (``critpath plan``), with rich tables."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..planning.planner import Plan


def print_plan(p: Plan, console: Console | None = None, top: int = 15) -> None:
    console = console or Console()
    g = p.graph
    console.print(f"[bold]{len(g)} services[/], {len(g.edges)} edges, max concurrency {p.max_concurrency}"
                  + (f", source {g.source}" if g.source else ""))
    console.print(f"critical path [bold]{p.critical_path_s:.2f} s[/]: " + " -> ".join(p.critical_path))
    ratio = p.simulated_makespan_s / p.lower_bound_s if p.lower_bound_s else 1.0
    console.print(f"total work {p.total_work_s:.2f} s; lower bound [bold]{p.lower_bound_s:.2f} s[/] "
                  f"(set by {p.constraint}); simulated makespan [bold]{p.simulated_makespan_s:.2f} s[/] "
                  f"({ratio:.2f} x bound)"
                  + ("; dispatch order improved by forward-backward justification" if p.justified else ""))
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
