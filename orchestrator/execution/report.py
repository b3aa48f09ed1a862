"""The run report: one JSON-ready dict with stable keys (its text summary is ``ui.summary``).

Keys (public, see README): makespan_s (first dispatch to last completion),
critical_path_s, critical_path, total_work_s, lower_bound_s, simulated_makespan_s,
efficiency (lower bound / makespan), max_concurrency, runner, flow_run_id, and
services: {name: {state, start, end, attempts, worker, ...}} with Unix seconds.
A run's Prefect bookkeeping adds (``flows.flow.refresh_in_flow``) prefect_recorded_s,
prefect_confirmed, and prefect_errors: one line per thing Prefect did not record (an
event it refused, final states the server had not stored), secrets masked; [] when all
was recorded. Reports written before it existed have no prefect_errors key.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from ..planning.errors import CritpathError
from ..planning.planner import Plan, bounds
from ..support.files import write_text


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
            "lost_worker": r.lost_worker,
            "attempt_history": [asdict(a) for a in r.history],
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
    write_text(path, json.dumps(report, indent=1, default=str))


REQUIRED = ("makespan_s", "critical_path", "critical_path_s", "lower_bound_s", "runner", "services")


def read_report(path: str | os.PathLike) -> dict:
    """A saved report, or a one-line error naming the file and what is wrong with it."""
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
