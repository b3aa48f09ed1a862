"""``run()``: one refresh as one Prefect flow run.

The runner (a thread pool, a process pool, a Dask or a Ray cluster) is started
before the flow run begins, so that an unreachable ``--address`` is a clear error
rather than a failed flow run, and cluster start-up is not counted in the
makespan. Inside the flow run the dispatcher drives the runner and the recorder
mirrors each service as a task run of this flow run. Called inside a user's own
flow, the refresh shows up as a subflow.
"""
from __future__ import annotations

from contextlib import ExitStack, nullcontext
from typing import Iterable

from ..execution.control import RunControl, cancel_on_signals, shielded_from_ctrl_c
from ..execution.engines import started
from ..execution.report import build_report, write_report
from ..planning.errors import CritpathError, show
from ..planning.graph import Graph
from ..planning.planner import make_plan
from ..planning.ranges import DEFAULT_CONCURRENCY, MAX_SLOTS
from ..planning.selection import select as select_services
from ..planning.validate import validate
from .server import drain
from .settings import prefect_env_defaults


def run(graph: Graph, runner="threads", *, max_concurrency: int | None = None, workers: int | None = None,
        address: str | None = None, select: str | None = None, observers: Iterable = (),
        json_report: str | None = None, flow_name: str = "critpath-refresh", control: RunControl | None = None,
        skip: Iterable[str] = ()) -> dict:
    """Run ``graph`` and return the report (see ``orchestrator.report``).

    ``runner`` is a name (threads, processes, dask, ray) or a runner object the
    caller has already entered. ``max_concurrency`` defaults to the runner's
    capacity; ``workers`` to ``max_concurrency`` or 8. ``skip`` names services
    that already completed (a resumed run): they are neither run nor waited on.
    ``control`` (a ``RunControl``) lets another thread or a signal handler cancel the run.
    """
    prefect_env_defaults()
    from prefect import flow

    for label, value in (("--max-concurrency", max_concurrency), ("--workers", workers)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or not 1 <= value <= MAX_SLOTS):
            raise CritpathError(f"{label} {show(value)}: must be a whole number from 1 to {MAX_SLOTS}")
    validate(graph)
    graph = select_services(graph, select)
    done = set(skip)
    if done:
        graph = graph.subgraph(n for n in graph.names if n not in done)
    with ExitStack() as stack:
        from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as STARTUP
        from prefect.settings import temporary_settings

        if STARTUP.value() < 90:  # settings were read at import: the env default may be too late
            stack.enter_context(temporary_settings(updates={STARTUP: 90}))
        if isinstance(runner, str):
            runner = stack.enter_context(started(runner, workers or max_concurrency or DEFAULT_CONCURRENCY,
                                                  address))
        if control is not None and control.handles_signals:
            start_prefect_api()  # after the runner: a bad --address fails before Prefect starts
        limit = max_concurrency or runner.capacity
        plan = make_plan(graph, limit)
        result: dict = {}

        def refresh(graph_source: str, runner_name: str, max_concurrency: int, services: int):
            return refresh_in_flow(plan, runner, observers, result, control)

        refresh_flow = flow(name=flow_name, log_prints=False, persist_result=False,
                            validate_parameters=False)(refresh)
        state = refresh_flow(graph.source or "<python>", runner.name, limit, len(graph), return_state=True)
        drain()  # deliver the last log lines and events before a temporary server stops
    if "report" not in result:  # the flow run crashed before the dispatcher finished
        raise RuntimeError(f"the refresh flow run ended without a report: {state.message}")
    report = result["report"]
    if json_report:
        write_report(report, json_report)
    return report


def refresh_in_flow(plan, runner, observers: Iterable = (), result: dict | None = None,
                    control: RunControl | None = None):
    """Run ``plan`` inside the current Prefect flow run; the report goes to ``result["report"]``.

    Returns what the flow run should end with: a Failed state naming the failed
    services, or the report's summary fields.
    """
    from prefect.context import FlowRunContext
    from prefect.states import Cancelled, Failed

    from ..execution.dispatcher import Dispatcher
    from .recorder import PrefectRecorder

    result = {} if result is None else result
    flow_run_id = FlowRunContext.get().flow_run.id
    with PrefectRecorder(plan.graph, flow_run_id) as recorder:
        dispatcher = Dispatcher(plan, runner, [recorder, *observers], max_concurrency=plan.max_concurrency)
        if control is not None:
            control.attach(dispatcher)
        # Prefect installs its own SIGTERM handler when the flow run starts: take the
        # signals back for the dispatcher while it runs (only the main thread can)
        import threading

        guard = (cancel_on_signals(control) if control is not None and control.handles_signals
                 and threading.current_thread() is threading.main_thread() else nullcontext())
        with guard:
            runs = dispatcher.run()
    report = build_report(plan, runs, dispatcher, runner.name, flow_run_id)
    # how long after the first dispatch Prefect had stored every final state
    report["prefect_recorded_s"] = (recorder.recorded_at - dispatcher.first_dispatch
                                    if dispatcher.first_dispatch else 0.0)
    report["prefect_confirmed"] = recorder.confirmed
    # what Prefect's bookkeeping lost (events refused, final states not stored): [] when none
    report["prefect_errors"] = list(recorder.errors)
    report["signal"] = control.signal if control is not None else None
    result["report"] = report
    if dispatcher.cancelled:
        return Cancelled(message=f"{dispatcher.cancelled}: {len(report['cancelled'])} service(s) cancelled in "
                                 f"flight, {len(report['not_run'])} not started")
    if report["failed"]:
        return Failed(message=f"{len(report['failed'])} service(s) failed: "
                              f"{', '.join(report['failed'])}; {len(report['skipped'])} skipped")
    return {k: v for k, v in report.items() if k != "services"}


def start_prefect_api() -> None:
    """Start Prefect's temporary local server now (when no PREFECT_API_URL is set),
    shielded from Ctrl-C, instead of lazily inside the flow run."""
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return
    from prefect.client.orchestration import get_client

    with shielded_from_ctrl_c():  # its start-up timeout: see run(), its only caller
        with get_client(sync_client=True):
            pass
