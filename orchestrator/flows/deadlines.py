"""A deadline at risk, said everywhere it should be: the console, the flow run, Prefect, the hook.

``watcher`` builds the ``execution.deadline.DeadlineWatcher`` of one refresh with a ``notify``
that, on the watcher's own thread (never the dispatcher's):
  * prints the one-line message on stderr;
  * logs it to the flow run (Prefect's API log handler, with the flow run's id);
  * emits the Prefect event ``critpath.deadline.at-risk`` (or ``critpath.deadline.recovered``),
    its resource ``critpath.refresh.<run id>``, the flow run as a related resource (role
    ``flow-run``) and the details as its payload, for a Prefect automation to act on;
  * runs ``on_deadline_risk`` with the details as JSON on its standard input; its failure is
    printed and logged, never raised.
"""
from __future__ import annotations

import logging
import sys

from ..execution.deadline import DeadlineWatch, DeadlineWatcher, run_hook


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):  # no stderr to write to
        pass


def watcher(plan, watch: DeadlineWatch | None, flow_run_id, flow_name: str | None = None) -> DeadlineWatcher | None:
    """The watcher of ``watch`` for this flow run, or None without a deadline."""
    if watch is None:
        return None
    from prefect.events import emit_event
    from prefect.logging.handlers import APILogHandler

    handler = APILogHandler()
    ref = watch.run_id or str(flow_run_id)

    def log(level: int, text: str) -> None:
        record = logging.LogRecord("prefect.flow_runs", level, "", 0, text, None, None)
        record.flow_run_id = flow_run_id
        handler.handle(record)

    def notify(kind: str, details: dict) -> None:
        details = {**details, "flow_run_id": str(flow_run_id), "run_id": ref}
        _say(details["message"])
        log(logging.WARNING if kind == "at-risk" else logging.INFO, details["message"])
        try:
            emit_event(event=f"critpath.deadline.{kind}",
                       resource={"prefect.resource.id": f"critpath.refresh.{ref}",
                                 "prefect.resource.name": flow_name or "critpath-refresh"},
                       related=[{"prefect.resource.id": f"prefect.flow-run.{flow_run_id}",
                                 "prefect.resource.role": "flow-run"}],
                       payload=details)
        except Exception as exc:  # said, never raised: the refresh goes on
            problem = f"critpath: warning: the Prefect event critpath.deadline.{kind} was not sent: {exc}"
            _say(problem)
            log(logging.WARNING, problem)
        if watch.hook:
            problem = run_hook(watch.hook, details)
            if problem is not None:
                _say(f"critpath: warning: {problem}")
                log(logging.WARNING, f"critpath: {problem}")

    return DeadlineWatcher(plan, watch.deadline, watch.spread, notify, planned_at=watch.planned_at)
