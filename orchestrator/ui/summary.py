"""The text summary printed at the end of a run (and by ``critpath report``)."""
from __future__ import annotations


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
    predicted = report.get("predicted_makespan_s")
    if isinstance(predicted, (int, float)) and predicted > 0:
        error = report.get("prediction_error")
        cores = report.get("cores")
        lines.append(f"predicted {predicted:.2f} s" + (f" on {cores:g} cores" if isinstance(cores, (int, float)) else "")
                     + f", measured {report['makespan_s']:.2f} s"
                     + (f" ({error:+.0%} against the prediction)" if isinstance(error, (int, float)) else ""))
    shared = shared_pools_line(report)
    if shared:
        lines.append(shared)
    deadline = deadline_line(report.get("deadline"))
    if deadline:
        lines.append(deadline)
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
    in_flight = report.get("resumed_in_flight")  # a list when the resumed run had no end marker
    if isinstance(in_flight, list):
        names = ", ".join(str(n) for n in in_flight)
        lines.append(f"run {report.get('resumed_from')} had ended abruptly with {len(in_flight)} in flight"
                     + (f" (run again here if selected): {names}" if in_flight else ""))
    if report["skipped"]:
        lines.append(f"SKIPPED {len(report['skipped'])} downstream of a failure: {', '.join(report['skipped'])}")
    prefect_errors = report.get("prefect_errors") or []  # absent from reports written before it existed
    if prefect_errors:  # the services ran as reported; Prefect's record of them is incomplete
        lines.append(f"PREFECT bookkeeping failed for {len(prefect_errors)} item(s), so the Prefect UI may not "
                     f"match this report; first: {prefect_errors[0]}")
    return "\n".join(lines)


def shared_pools_line(report: dict) -> str | None:
    """When pools shared with other refreshes cost this run time (the report's ``shared_wait_s``)."""
    waited = _num(report.get("shared_wait_s"))
    pools = report.get("shared_pools")
    if waited is None or not isinstance(pools, dict):
        return None
    limits = ", ".join(f"{p} = {n}" for p, n in sorted(pools.items()))
    if waited <= 0:
        return f"shared pools ({limits}): no service waited for a slot held by another refresh"
    who = sorted(((s.get("shared_wait_s") or 0.0, n) for n, s in report["services"].items()
                  if isinstance(s, dict) and (_num(s.get("shared_wait_s")) or 0) > 0), reverse=True)
    most = ", ".join(f"{n} {w:.1f} s" for w, n in who[:3])
    return (f"SHARED POOLS cost time ({limits}): {len(who)} service(s) waited {waited:.1f} s in all for slots "
            f"other refreshes held; longest: {most}")


def _num(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and x == x and abs(x) != float("inf") \
        else None


def deadline_line(d) -> str | None:
    """Whether the run met its deadline (the report's ``deadline``), and when it was flagged."""
    if not isinstance(d, dict) or _num(d.get("at")) is None:
        return None
    from ..planning.deadline import clock, span

    at, finished = _num(d["at"]), _num(d.get("finished_at"))

    def when(t: float) -> str:  # the date too when it is not the day the run finished
        return clock(t, None, finished if finished is not None else at)

    flagged, recovered = _num(d.get("at_risk_at")), _num(d.get("recovered_at"))
    if flagged is None:
        said = "; never flagged at risk"
    else:
        said = f"; flagged at risk at {when(flagged)}" + (f", {span(at - flagged)} before it" if flagged <= at else "")
    if recovered is not None:
        said += f", back on track at {when(recovered)}"
    predicted = _num(d.get("predicted_finish_at_start"))
    if predicted is not None:
        said += f"; predicted finish at the start {when(predicted)}"
    errors = d.get("errors")
    if isinstance(errors, list) and errors:  # the watcher itself failed: its silence means nothing
        said += f"; WATCHING IT FAILED: {errors[0]}"
    if d.get("met") and finished is not None:
        return f"deadline {when(at)} met: finished {when(finished)}, {span(at - finished)} before it" + said
    if finished is not None and finished > at:
        return f"DEADLINE MISSED: {when(at)}, finished {when(finished)}, {span(finished - at)} late" + said
    return f"DEADLINE NOT MET: {when(at)}: not every service completed" + said
