"""The README's Performance tables, from the JSON of one ``critpath bench`` run.

    critpath bench --json out/bench.json
    python -m benchmarks.markdown out/bench.json

Overhead, throughput, planner and refresh are shown row for row. Efficiency has one row
per case and concurrency in the JSON (hundreds in a full run); here each runner gets one
row of worst and median ratios over every case, plus one row for the plan itself, and
every case that missed a target is listed by name.
"""
from __future__ import annotations

import json
import statistics
import sys

from .tables import _f  # the same number format as the terminal tables


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def overhead(rows: list[dict]) -> str:
    return _table(["runner", "critpath ms/hop", "recorded ms/hop", "Prefect-native ms/hop", "raw round trip ms/hop",
                   "critpath / raw", "native / critpath", "target ms/hop", "met"],
                  [[r["runner"], _f(r["critpath_ms_per_hop"]), _f(r["critpath_recorded_ms_per_hop"]),
                    "skipped" if r.get("native_skipped") else f"{_f(r['native_ms_per_hop'])} ({r['native'] or 'none'})",
                    f"{_f(r['raw_round_trip_ms_per_hop'])} ({r['raw']})", _f(r["critpath_over_raw_round_trip"], ".1f"),
                    _f(r["native_over_critpath"], ".0f"), _f(r["target_ms_per_hop"], ".1f"),
                    _met(r["target_met"])] for r in rows])


def throughput(rows: list[dict]) -> str:
    return _table(["runner", "conc", "critpath /s", "recorded /s", "Prefect-native /s [services]", "raw engine /s",
                   "critpath / native", "met (300/s)"],
                  [[r["runner"], str(r["concurrency"]), _f(r["critpath_per_s"], ".0f"),
                    _f(r["critpath_recorded_per_s"], ".0f"),
                    f"{_f(r['native_per_s'], '.0f')} [{r['native_services']}]" if r["native_per_s"] else "n/a",
                    _f(r["raw_per_s"], ".0f"), _f(r["critpath_over_native"], ".1f"),
                    _met(r["target_met"])] for r in rows])


def _spread(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    return f"{statistics.median(values):.3f} / {max(values):.3f}"


def _median(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    return f"{statistics.median(values):.3f}" if values else "n/a"


def _met(flag) -> str:
    return {True: "yes", False: "**no**", None: "-"}[flag]


def efficiency(rows: list[dict]) -> str:
    cases = {(r["case"], r["concurrency"]): r for r in rows}
    plan_rows = [["plan (simulated)", str(len(cases)), "", _spread([r["simulated_over_best"] for r in cases.values()]),
                  _spread([r["simulated_s"] / r["bound_s"] for r in cases.values()]), "",
                  str(sum(1 for r in cases.values() if r["simulated_target_met"] is False))]]
    by_runner: dict[str, list[dict]] = {}
    for r in rows:
        by_runner.setdefault(r["runner"], []).append(r)
    runner_rows = [[name, str(len(rs)), _spread([r["achieved_over_simulated"] for r in rs]),
                    _spread([r["achieved_over_best"] for r in rs]), _spread([r["achieved_over_bound"] for r in rs]),
                    f"{_median([r['native_over_best'] for r in rs])} / {_median([r['raw_over_best'] for r in rs])}",
                    str(sum(1 for r in rs if r["target_met"] is False))]
                   for name, rs in by_runner.items()]
    table = _table(["", "cases", "achieved / sim (median / worst)", "/ best", "/ bound",
                    "Prefect-native / best, raw / best (median)", "targets missed"], plan_rows + runner_rows)
    misses = [f"{r['case']} @ {r['concurrency']}: sim / best {r['simulated_over_best']:.3f}"
              for r in cases.values() if r["simulated_target_met"] is False]
    misses += [f"{r['case']} @ {r['concurrency']} on {r['runner']}: achieved / sim {r['achieved_over_simulated']:.3f}"
               for r in rows if r["target_met"] is False]
    return table + ("\n\nMissed (target 1.05):\n\n" + "\n".join(f"- {m}" for m in misses) if misses else "")


def planner(rows: list[dict]) -> str:
    return _table(["services", "edges", "validate + plan s", "total s (with build)", "peak RSS MB", "traced MB",
                   "graphlib s", "met (< 3 s)"],
                  [[f"{r['services']:,}", f"{r['edges']:,}", _f(r["validate_and_plan_s"], ".3f"), _f(r["total_s"], ".3f"),
                    _f(r["peak_rss_mb"], ".0f"), _f(r["traced_peak_mb"], ".0f"), _f(r.get("graphlib_s"), ".3f"),
                    _met(r["target_met"])] for r in rows])


def refresh(rows: list[dict]) -> str:
    return _table(["runner", "makespan s", "bound as run s", "makespan / bound", "Prefect-native s (/ its bound)",
                   "raw s (/ its bound)", "failed"],
                  [[r["runner"], _f(r.get("makespan_s")), _f(r.get("measured_bound_s")),
                    _f(r.get("makespan_over_measured_bound"), ".3f"),
                    f"{_f(r.get('native_s'))} ({_f(r.get('native_over_measured_bound'), '.3f')})",
                    f"{_f(r.get('raw_s'))} ({_f(r.get('raw_over_measured_bound'), '.3f')})", str(r.get("failed"))]
                   for r in rows if not r.get("skipped")])


def prediction(rows: list[dict]) -> str:
    return _table(["runner", "graph", "conc", "predicted s", "simulated s", "measured s", "error", "simulated error",
                   "met (10%)"],
                  [[r["runner"], r["graph"], str(p["concurrency"]), _f(p.get("predicted_s")), _f(p.get("simulated_s")),
                    _f(p.get("measured_s")), _pct(p.get("prediction_error")), _pct(p.get("simulation_error")),
                    _met(p.get("target_met"))] for r in rows for p in r.get("points", [])])


def freshness(rows: list[dict]) -> str:
    return _table(["runner", "scale", "rounds", "freshness s (worst)", "Prefect s: automation + start",
                   "critpath set-up s", "makespan s", "critical path s", "freshness / CP", "makespan / CP"],
                  [[r["runner"], _f(r.get("scale"), "g"), str(r.get("rounds")),
                    f"{_f(r.get('freshness_s'))} ({_f(r.get('worst_freshness_s'))})",
                    f"{_f(r.get('prefect_s'))}: {_f(r.get('automation_s'))} + {_f(r.get('start_s'))}",
                    _f(r.get("setup_s")), _f(r.get("makespan_s")), _f(r.get("critical_path_s")),
                    _f(r.get("freshness_over_critical_path"), ".1f"), _f(r.get("makespan_over_critical_path"), ".2f")]
                   for r in rows])


def _pct(x) -> str:
    return "n/a" if x is None else f"{x:+.1%}"


SECTIONS = [("overhead", "Critical-path overhead (50-service no-op chain)", overhead),
            ("throughput", "Fan-out throughput (2,000 no-op services)", throughput),
            ("efficiency", "Critical-path efficiency (families and traces, scaled to a 3 s bound)", efficiency),
            ("planner", "Planner scale", planner),
            ("refresh", "The bundled refresh", refresh),
            ("prediction", "Prediction (predicted against measured makespan, after warm-up runs)", prediction),
            ("freshness", "Freshness (event on ingest_orders to ingest_orders+ done)", freshness)]


def render(doc: dict) -> str:
    meta = doc["meta"]
    out = [f"`critpath {' '.join(meta['argv'])}`, started {meta['started_at'][:16].replace('T', ' ')} UTC, "
           f"{meta['wall_s'] / 60:.0f} min, {meta['cores']} cores, load average before "
           f"{meta['load_before'][0]:.2f}; prefect {meta['versions']['prefect']}, distributed "
           f"{meta['versions']['distributed']}, ray {meta['versions']['ray']}."]
    for key, title, fn in SECTIONS:
        rows = [r for r in doc["results"].get(key, []) if not r.get("error")]
        if rows:
            out += [f"**{title}**", fn(rows)]
    if doc.get("broken"):
        out.append("Broken invariants: " + "; ".join(doc["broken"]))
    return "\n\n".join(out) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m benchmarks.markdown BENCH.json")
    with open(sys.argv[1]) as f:
        print(render(json.load(f)), end="")
