"""One rich table per measure: critpath, Prefect-native and the raw engine side by
side, with the ratios between them. A missed target is marked ``MISS`` (red);
n/a means the baseline does not exist (no Prefect-native process runner) or was
not run for that case (see the table's caption)."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table


def _f(x, fmt: str = ".2f", suffix: str = "") -> str:
    if x is None:
        return "n/a"
    return f"{x:{fmt}}{suffix}"


def _met(flag) -> str:
    return {True: "[green]ok[/]", False: "[bold red]MISS[/]", None: "-"}[flag]


def _table(title: str, caption: str, columns: list[str]) -> Table:
    t = Table(title=title, caption=caption, caption_justify="left", title_justify="left", header_style="bold")
    for i, c in enumerate(columns):
        t.add_column(c, justify="left" if i == 0 or c in ("case", "runner", "status") else "right", overflow="fold")
    return t


def overhead(rows: list[dict]) -> Table:
    t = _table("1. Critical-path overhead: a chain of 50 no-op services, ms per hop (median)",
               "per hop = makespan / 50. critpath 'recorded' = until Prefect had stored every final state. "
               "Raw in-engine passes each future/ref as the next one's argument (n/a: concurrent.futures has no "
               "dependencies); round trip waits for each result in the driver. Prefect-native: median of the rounds "
               "on threads, one round on Dask and Ray; 'skipped' in --quick on Dask (about 140 ms per hop) and on Ray, "
               "where each hop waits for a new Ray worker to start (seconds per hop). Target: critpath <= 2 x raw round trip + 5 ms, every service "
               "still a Prefect task run with state and logs.",
               ["runner", "critpath", "recorded", "Prefect-native", "raw in-engine", "raw round trip",
                "critpath / raw RT", "native / critpath", "target", "met"])
    for r in rows:
        t.add_row(r["runner"], _f(r["critpath_ms_per_hop"]), _f(r["critpath_recorded_ms_per_hop"]),
                  "skipped" if r.get("native_skipped") else f"{_f(r['native_ms_per_hop'])} ({r['native'] or 'none'})",
                  _f(r["raw_in_engine_ms_per_hop"]),
                  f"{_f(r['raw_round_trip_ms_per_hop'])} ({r['raw']})", _f(r["critpath_over_raw_round_trip"], ".1f", "x"),
                  _f(r["native_over_critpath"], ".0f", "x"), _f(r["target_ms_per_hop"], ".1f"), _met(r["target_met"]))
    return t


def throughput(rows: list[dict]) -> Table:
    t = _table("2. Fan-out throughput: independent no-op services, services per second (median)",
               "critpath = services / makespan (first dispatch to last completion); 'recorded' = services / time "
               "until Prefect had stored every final state. critpath keeps at most 'conc' services on the engine. "
               "Prefect-native runs fewer services on Dask and Ray ([n]) at the runner's default concurrency only. "
               "Target: critpath >= 300/s.",
               ["runner", "conc", "services", "critpath", "recorded", "Prefect-native", "raw engine",
                "critpath / native", "critpath / raw", "met"])
    for r in rows:
        native = f"{_f(r['native_per_s'], '.0f')} [{r['native_services']}]" if r["native_per_s"] else "n/a"
        t.add_row(r["runner"], str(r["concurrency"]), str(r["services"]), _f(r["critpath_per_s"], ".0f"),
                  _f(r["critpath_recorded_per_s"], ".0f"), native, _f(r["raw_per_s"], ".0f"),
                  _f(r["critpath_over_native"], ".1f", "x"), _f(r["critpath_over_raw"], ".2f", "x"),
                  _met(r["target_met"]))
    return t


def efficiency(rows: list[dict]) -> Table:
    t = _table("3. Critical-path efficiency: makespan in seconds, each case scaled to a lower bound of 3 s",
               "bound = max(critical path, work / conc, pool work / pool limit). best = the best schedule CP-SAT "
               "found within its time limit [its proven lower bound]; OPTIMAL when they meet (durations rounded to "
               "ms, so +-0.001). sim = the plan's simulated makespan. achieved = critpath's median refresh "
               "(--efficiency-rounds, default 3), worst/sim its slowest. Prefect-native and raw run only on the "
               "families without pools, at the baseline concurrencies (n/a elsewhere; Prefect and the raw engines "
               "have no pool limits), and Prefect-native on Ray only on the two issue graphs (each waiting task "
               "holds a Ray worker and Ray starts another: minutes per deep graph). Targets: achieved / sim "
               "<= 1.05, sim / best <= 1.05.",
               ["case", "conc", "n", "bound", "best [proven]", "sim", "sim/best", "runner", "achieved",
                "/bound", "/best", "/sim", "worst/sim", "native", "raw", "native/best", "raw/best"])
    last = None
    for r in rows:
        key = (r["case"], r["concurrency"])
        first = key != last
        if first and last is not None:
            t.add_section()
        last = key
        best = (f"{_f(r['best_s'], '.3f')} [{_f(r['best_proven_s'], '.3f')}]"
                + ("" if r["best_status"] == "OPTIMAL" else f" {r['best_status'].lower()}"))
        sim_best = _f(r["simulated_over_best"], ".3f") + ("" if r["simulated_target_met"] is not False
                                                          else " [bold red]MISS[/]")
        achieved_sim = _f(r["achieved_over_simulated"], ".3f") + ("" if r["target_met"] is not False
                                                                  else " [bold red]MISS[/]")
        t.add_row(r["case"] if first else "", str(r["concurrency"]) if first else "",
                  str(r["services"]) if first else "", _f(r["bound_s"], ".3f") if first else "",
                  best if first else "", _f(r["simulated_s"], ".3f") if first else "", sim_best if first else "",
                  r["runner"], _f(r["critpath_s"], ".3f"), _f(r["achieved_over_bound"], ".3f"),
                  _f(r["achieved_over_best"], ".3f"), achieved_sim, _f(r.get("achieved_over_simulated_worst"), ".3f"),
                  _f(r["native_s"], ".3f"), _f(r["raw_s"], ".3f"),
                  _f(r["native_over_best"], ".3f"), _f(r["raw_over_best"], ".3f"))
    return t


def planner(rows: list[dict]) -> Table:
    t = _table("4. Planner scale: N services, 3 edges each on average (fresh process per size)",
               "build = Graph(services); validate and plan = what 'critpath plan' does with a loaded graph; "
               "peak RSS of the whole process, traced = tracemalloc peak of build + validate + plan. raw = "
               "graphlib ordering the same edges (the floor); Prefect has no planner (n/a). "
               "Target: validate + plan of 100,000 services < 3 s.",
               ["services", "edges", "build s", "validate s", "plan s", "validate+plan s", "total s",
                "peak RSS MB", "traced MB", "raw (graphlib) s", "met"])
    for r in rows:
        t.add_row(f"{r['services']:,}", f"{r['edges']:,}", _f(r["build_s"], ".3f"), _f(r["validate_s"], ".3f"),
                  _f(r["plan_s"], ".3f"), _f(r["validate_and_plan_s"], ".3f"), _f(r["total_s"], ".3f"),
                  _f(r["peak_rss_mb"], ".0f"), _f(r["traced_peak_mb"], ".0f"), _f(r.get("graphlib_s"), ".3f"),
                  _met(r["target_met"]))
    return t


def refresh(rows: list[dict]) -> Table:
    t = _table("5. The bundled refresh (services.refinery) end to end, seconds",
               "bound (as run) = max(critical path, work / conc, pool work / limit) of the durations measured on "
               "the workers; bound (estimates) = the plan's. Prefect-native and raw run the same functions at "
               "concurrency = the warehouse pool's limit, each against its own measured bound.",
               ["runner", "makespan", "recorded", "bound (as run)", "makespan / bound", "bound (estimates)",
                "sim (estimates)", "Prefect-native (/bound)", "raw (/bound)", "failed"])
    for r in rows:
        if r.get("skipped"):
            t.add_row(r["runner"], f"skipped: {r['skipped']}", *[""] * 8)
            continue
        t.add_row(r["runner"], _f(r["makespan_s"]), _f(r["recorded_s"]), _f(r["measured_bound_s"]),
                  _f(r["makespan_over_measured_bound"], ".3f"), _f(r["estimated_bound_s"]), _f(r["simulated_s"]),
                  f"{_f(r['native_s'])} ({_f(r['native_over_measured_bound'], '.3f')})",
                  f"{_f(r['raw_s'])} ({_f(r['raw_over_measured_bound'], '.3f')})", str(r["failed"]))
    return t




def prediction(rows: list[dict]) -> Table:
    t = _table("6. Prediction: the plan's predicted makespan against the run's, after warm-up runs",
               "predicted = the planner on the machine model (cores, CPU demand and runner overhead from history); "
               "simulated = the slot-only simulation without a machine model (what the plan said before). "
               "error = measured / predicted - 1. Target: |error| <= 10% at every concurrency (goal 5%).",
               ["runner", "graph", "conc", "cores", "predicted s", "simulated s", "measured s", "error",
                "simulated error", "met"])
    for r in rows:
        for p in r.get("points", []):
            t.add_row(r["runner"], r["graph"], str(p["concurrency"]), _f(p["cores"], "g"), _f(p["predicted_s"]),
                      _f(p["simulated_s"]), _f(p["measured_s"]), _f(p["prediction_error"], "+.1%"),
                      _f(p["simulation_error"], "+.1%"), _met(p["target_met"]))
    return t


def freshness(rows: list[dict]) -> Table:
    t = _table("7. Freshness: an event on ingest_orders to the last service of ingest_orders+ done, seconds "
               "(median of the rounds)",
               "critpath serve (no schedule) of the bundled refresh; each round a newer day of orders lands and "
               "critpath.service.updated is sent. Prefect = event -> flow run running: automation (event -> run "
               "created) + start (created -> running: debounce, serve's runner poll, the run's process). "
               "set-up = running -> first service start. critical path = the longest chain of the affected "
               "services by their measured durations. No target.",
               ["runner", "scale", "rounds", "services", "freshness", "worst", "Prefect", "automation", "start",
                "set-up", "makespan", "critical path", "freshness / CP", "makespan / CP"])
    for r in rows:
        t.add_row(r["runner"], _f(r["scale"], "g"), str(r["rounds"]), str(r["services"]), _f(r["freshness_s"]),
                  _f(r["worst_freshness_s"]), _f(r["prefect_s"]), _f(r["automation_s"]), _f(r["start_s"]),
                  _f(r["setup_s"]), _f(r["makespan_s"]), _f(r["critical_path_s"]),
                  _f(r["freshness_over_critical_path"], ".1f", "x"), _f(r["makespan_over_critical_path"], ".2f", "x"))
    return t


RENDER = {"overhead": overhead, "throughput": throughput, "efficiency": efficiency, "planner": planner,
          "refresh": refresh, "prediction": prediction, "freshness": freshness}


def print_tables(results: dict[str, list[dict]], console: Console | None = None) -> None:
    console = console or Console(width=max(Console().width, 180))
    for measure, render in RENDER.items():
        rows = [r for r in results.get(measure, []) if not r.get("error")]
        if rows:
            console.print(render(rows))
            console.print()
