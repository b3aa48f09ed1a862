"""The run report: one JSON-ready dict with stable keys (its text summary is ``ui.summary``).

Keys (public, see README): makespan_s (first dispatch to last completion),
critical_path_s, critical_path, total_work_s, lower_bound_s, simulated_makespan_s,
efficiency (lower bound / makespan), max_concurrency, runner, flow_run_id, and
services: {name: {state, start, end, attempts, worker, ...}} with Unix seconds.
A run with a deadline adds deadline: {at, predicted_finish_at_start, at_risk_at, finished_at,
met} (Unix seconds or null; met: every service completed by ``at``; also given, margin_s,
recovered_at). A run's Prefect bookkeeping adds (``flows.flow.refresh_in_flow``) prefect_recorded_s,
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
    shared = getattr(dispatcher, "shared", None)
    for i, name in enumerate(plan.graph.names):
        r = runs[name]
        services[name] = {
            "state": r.state if r.state in ("completed", "failed", "skipped", "cancelled") else "not_run",
            "start": r.start, "end": r.end, "attempts": r.attempts, "worker": r.worker,
            "error": r.error, "skipped_because": r.skipped_because,
            "estimate_s": plan.est[i], "priority_s": plan.priority[i],
            "estimate_source": plan.estimate_source[i] if plan.estimate_source else None,
            "lost_worker": r.lost_worker,
            "attempt_history": [asdict(a) for a in r.history],
            # seconds it was ready, with a slot here, but every shared slot of its pool was
            # held by other refreshes; None when the pools are not shared
            "shared_wait_s": shared.waited.get(i, 0.0) if shared is not None else None,
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
        # the planner's prediction on the machine model, and how far the run was from it
        "predicted_makespan_s": plan.predicted_makespan_s,
        "prediction_error": (makespan / plan.predicted_makespan_s - 1
                             if plan.predicted_makespan_s and makespan > 0 else None),
        "cores": plan.machine.cores if plan.machine else None,
        "cpu_aware": plan.cpu_aware,
        "max_concurrency": dispatcher.max_concurrency,
        "runner": runner_name,
        "flow_run_id": str(flow_run_id) if flow_run_id else None,
        "started_at": first,
        "failed": sorted(n for n, s in services.items() if s["state"] == "failed"),
        "skipped": sorted(n for n, s in services.items() if s["state"] == "skipped"),
        "cancelled": sorted(n for n, s in services.items() if s["state"] == "cancelled"),
        "not_run": sorted(n for n, s in services.items() if s["state"] == "not_run"),
        "cancel_reason": dispatcher.cancelled,
        "shared_wait_s": sum(shared.waited.values()) if shared is not None else None,
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
    problems = report_problems(data)
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CritpathError(f"report {str(p)!r} has been changed into something critpath cannot read: "
                            f"{'; '.join(problems[:3])}{more}; write it again with 'critpath run', or fix "
                            "those keys")
    return data


_NUMBERS = ("makespan_s", "critical_path_s", "lower_bound_s")
_OPTIONAL_NUMBERS = ("simulated_makespan_s", "total_work_s", "efficiency", "measured_critical_path_s",
                     "measured_total_work_s", "measured_lower_bound_s", "started_at", "predicted_makespan_s",
                     "prediction_error")
_NAME_LISTS = ("critical_path", "failed", "skipped", "cancelled", "not_run", "measured_critical_path")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


#: the last second of year 9999: a later "Unix seconds" is no time a clock can show
_MAX_UNIX = 253402300799


def _deadline_problems(d) -> list[str]:
    """What is wrong with a report's ``deadline`` (absent in runs without one)."""
    from ..planning.errors import show

    if d is None:
        return []
    if not isinstance(d, dict):
        return [f"deadline must be an object (at, predicted_finish_at_start, at_risk_at, finished_at, met), "
                f"got {show(d)}"]
    problems = []
    for key in ("at", "predicted_finish_at_start", "at_risk_at", "recovered_at", "finished_at", "margin_s"):
        v = d.get(key)
        if (v is None and key != "at") or (_number(v) and 0 <= v <= _MAX_UNIX):
            continue
        problems.append(f"deadline.{key} must be Unix seconds{'' if key == 'at' else ' or null'}, got {show(v)}")
    if not isinstance(d.get("met"), bool):
        problems.append(f"deadline.met must be true or false, got {show(d.get('met'))}")
    return problems


def report_problems(data: dict) -> list[str]:
    """What in a (hand-edited) report the summary and the timeline could not read, each naming the key."""
    from ..planning.errors import show

    problems = []
    for key in _NUMBERS:
        if not _number(data.get(key)):
            problems.append(f"{key} must be a number of seconds, got {show(data.get(key))}")
    for key in _OPTIONAL_NUMBERS:
        if data.get(key) is not None and not _number(data[key]):
            problems.append(f"{key} must be a number or null, got {show(data[key])}")
    if not isinstance(data.get("runner"), str):
        problems.append(f"runner must be a runner name, got {show(data.get('runner'))}")
    if data.get("max_concurrency") is not None and not (isinstance(data["max_concurrency"], int)
                                                         and not isinstance(data["max_concurrency"], bool)):
        problems.append(f"max_concurrency must be a whole number, got {show(data['max_concurrency'])}")
    services = data.get("services")
    if not isinstance(services, dict):
        return problems + [f"services must be an object of service name -> its record, got {show(services)}"]
    for name, svc in services.items():
        if not isinstance(svc, dict):
            problems.append(f"services.{name} must be an object (state, start, end, attempts, ...), got {show(svc)}")
            continue
        if not isinstance(svc.get("state"), str):
            problems.append(f"services.{name}.state must be a state name, got {show(svc.get('state'))}")
        for key in ("start", "end"):
            if svc.get(key) is not None and not _number(svc[key]):
                problems.append(f"services.{name}.{key} must be Unix seconds or null, got {show(svc[key])}")
        if svc.get("attempts") is not None and not (isinstance(svc["attempts"], int)
                                                     and not isinstance(svc["attempts"], bool)):
            problems.append(f"services.{name}.attempts must be a whole number, got {show(svc['attempts'])}")
        history = svc.get("attempt_history")
        if history is not None and not (isinstance(history, list) and all(isinstance(h, dict) for h in history)):
            problems.append(f"services.{name}.attempt_history must be a list of attempts, got {show(history)}")
    problems += _deadline_problems(data.get("deadline"))
    for key in _NAME_LISTS:
        value = data.get(key)
        if value is None and key not in ("critical_path",):
            continue
        if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
            problems.append(f"{key} must be a list of service names, got {show(value)}")
        elif key in ("failed", "skipped", "cancelled", "not_run"):
            unknown = [n for n in value if n not in services]
            if unknown:
                problems.append(f"{key} names {show(unknown)}, not among the report's services")
    return problems
