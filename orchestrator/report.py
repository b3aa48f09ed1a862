"""The run report: one JSON-ready dict with stable keys, and its text summary.

Keys (public, see README): makespan_s (first dispatch to last completion),
critical_path_s, critical_path, total_work_s, lower_bound_s, simulated_makespan_s,
efficiency (lower bound / makespan), max_concurrency, runner, flow_run_id, and
services: {name: {state, start, end, attempts, worker, ...}} with Unix seconds.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .planner import Plan, bounds


def measured_bound(plan: Plan, runs: dict, max_concurrency: int) -> dict:
    """The plan's bounds recomputed from what each service really took on its worker.

    Estimates can be far off (a default of 1 s for a service that takes 10 ms), so
    efficiency is judged against the measured critical path and work: no schedule
    of these durations under these limits could finish sooner than this bound.
    """
    g = plan.graph
    took = []
    for name in g.names:
        r = runs[name]
        took.append(max(0.0, r.end - r.start) if r.state == "completed" and r.start and r.end else 0.0)
    b = bounds(g, took, max_concurrency)
    return {"measured_critical_path": [g.names[i] for i in b.critical_path], "measured_critical_path_s": b.critical_path_s,
            "measured_total_work_s": b.total_work_s, "measured_lower_bound_s": b.lower_bound_s}


def build_report(plan: Plan, runs: dict, dispatcher, runner_name: str, flow_run_id) -> dict:
    first, last = dispatcher.first_dispatch, dispatcher.last_completion
    makespan = (last - first) if first is not None and last is not None else 0.0
    measured = measured_bound(plan, runs, dispatcher.max_concurrency)
    services = {}
    for i, name in enumerate(plan.graph.names):
        r = runs[name]
        services[name] = {
            "state": r.state if r.state in ("completed", "failed", "skipped", "cancelled") else "not_run",
            "start": r.start, "end": r.end, "attempts": r.attempts, "worker": r.worker,
            "error": r.error, "skipped_because": r.skipped_because,
            "estimate_s": plan.est[i], "priority_s": plan.priority[i],
            "lost_worker": any(h["lost"] for h in r.history),
            "attempt_history": r.history,
        }
    return {
        "makespan_s": makespan,
        "critical_path": list(plan.critical_path),
        "critical_path_s": plan.critical_path_s,
        "total_work_s": plan.total_work_s,
        "lower_bound_s": plan.lower_bound_s,
        "simulated_makespan_s": plan.simulated_makespan_s,
        **measured,
        # measured bound / makespan: 1.0 means no schedule of these durations could be faster
        "efficiency": (measured["measured_lower_bound_s"] / makespan) if makespan > 0 else None,
        "max_concurrency": dispatcher.max_concurrency,
        "runner": runner_name,
        "flow_run_id": str(flow_run_id) if flow_run_id else None,
        "started_at": first,
        "failed": sorted(n for n, s in services.items() if s["state"] == "failed"),
        "skipped": sorted(n for n, s in services.items() if s["state"] == "skipped"),
        "cancelled": sorted(n for n, s in services.items() if s["state"] == "cancelled"),
        "not_run": sorted(n for n, s in services.items() if s["state"] == "not_run"),
        "cancel_reason": dispatcher.cancelled,
        "services": services,
    }


def write_report(report: dict, path: str | os.PathLike) -> None:
    """Written atomically: a reader never sees half a report."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(report, indent=1, default=str))
    os.replace(tmp, path)


REQUIRED = ("makespan_s", "critical_path", "critical_path_s", "lower_bound_s", "runner", "services")


def read_report(path: str | os.PathLike) -> dict:
    """A saved report, or a one-line error naming the file and what is wrong with it."""
    from .errors import CritpathError

    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CritpathError(f"report {str(p)!r} not found; 'critpath run' writes one "
                            "(default .critpath/last-run.json)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CritpathError(f"report {str(p)!r}: cannot read it ({exc})") from None
    except json.JSONDecodeError as exc:
        raise CritpathError(f"report {str(p)!r} line {exc.lineno}, column {exc.colno}: {exc.msg}; "
                            "is it a critpath JSON report?") from None
    missing = [k for k in REQUIRED if not isinstance(data, dict) or k not in data]
    if missing:
        raise CritpathError(f"report {str(p)!r} is not a critpath run report (missing {', '.join(missing)})")
    return data


def summary(report: dict) -> str:
    ok = sum(1 for s in report["services"].values() if s["state"] == "completed")
    lines = [
        f"{ok}/{len(report['services'])} services completed on {report['runner']} "
        f"(max concurrency {report['max_concurrency']}) in {report['makespan_s']:.2f} s",
    ]
    if "measured_critical_path" in report:
        lines += [
            f"critical path {report['measured_critical_path_s']:.2f} s as run: "
            f"{' -> '.join(report['measured_critical_path'])}",
            f"lower bound {report['measured_lower_bound_s']:.2f} s as run, efficiency {report['efficiency'] or 0:.0%}"
            f" (lower bound / makespan); planned: critical path {report['critical_path_s']:.2f} s, "
            f"bound {report['lower_bound_s']:.2f} s, simulated {report['simulated_makespan_s']:.2f} s",
        ]
    else:  # a report from before measured bounds existed
        lines += [f"critical path {report['critical_path_s']:.2f} s: {' -> '.join(report['critical_path'])}",
                  f"lower bound {report['lower_bound_s']:.2f} s, simulated {report['simulated_makespan_s']:.2f} s, "
                  f"efficiency {report['efficiency'] or 0:.0%} (lower bound / makespan)"]
    for name in report["failed"]:
        s = report["services"][name]
        lines.append(f"FAILED  {name} after {s['attempts']} attempt(s): {s['error']}")
    for name, s in sorted(report["services"].items()):
        lost = [h for h in s.get("attempt_history", ()) if h.get("lost")]
        if lost:  # the infrastructure's failure, not the service's: say so even when a retry made up for it
            lines.append(f"LOST WORKER {name}: attempt {', '.join(str(h['attempt']) for h in lost)} died with "
                         f"its worker; {s['state']} after {s['attempts']} attempt(s)")
    if report.get("cancel_reason"):
        lines.append(f"CANCELLED ({report['cancel_reason']}): {len(report.get('cancelled', []))} in flight "
                     f"({', '.join(report.get('cancelled', [])) or 'none'}), "
                     f"{len(report.get('not_run', []))} not started")
    if report.get("resumed"):
        lines.append(f"resumed: {len(report['resumed'])} services had completed in run {report.get('resumed_from')}"
                     " and were not run again")
    if report["skipped"]:
        lines.append(f"SKIPPED {len(report['skipped'])} downstream of a failure: {', '.join(report['skipped'])}")
    return "\n".join(lines)
