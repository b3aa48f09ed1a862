"""``run()``: one refresh as one Prefect flow run.

The runner (a thread pool, a process pool, a Dask or a Ray cluster) is started
before the flow run begins, so that an unreachable ``--address`` is a clear error
rather than a failed flow run, and cluster start-up is not counted in the
makespan. Inside the flow run the dispatcher drives the runner and the recorder
mirrors each service as a task run of this flow run. Called inside a user's own
flow, the refresh shows up as a subflow.
"""
from __future__ import annotations

import logging
import sys
import uuid
from contextlib import ExitStack, contextmanager, nullcontext
from typing import Callable, Iterable

from ..execution.control import RunControl, cancel_on_signals
from ..execution.deadline import DeadlineWatch, watch_for
from ..execution.engines import started
from ..execution.machines import busy_for, planning_inputs
from ..execution.recording import HistoryObserver
from ..execution.report import build_report, write_report
from ..inputs.history import History
from ..planning.deadline import Deadline
from ..planning.deadline import resolve as resolve_deadline
from ..planning.errors import CritpathError, show
from ..planning.graph import Graph
from ..planning.planner import Plan, make_plan
from ..planning.ranges import DEFAULT_CONCURRENCY, MAX_SLOTS
from ..planning.selection import select as select_services
from ..planning.validate import validate
from .server import discard_undelivered, drain, temporary_api
from .settings import prefect_env_defaults

#: how long asking a Prefect server whether it is there may take
PROBE_TIMEOUT_S = 5.0


def run(graph: Graph, runner="threads", *, max_concurrency: int | None = None, workers: int | None = None,
        address: str | None = None, select: str | None = None, observers: Iterable = (),
        json_report: str | None = None, flow_name: str = "critpath-refresh", control: RunControl | None = None,
        skip: Iterable[str] = (), history: History | None = None, cpu_aware: bool = False,
        secrets: Iterable[str] = (), log_dir: str | None = None, run_id: str | None = None,
        on_plan: Callable[[Plan], None] | None = None, deadline: Deadline | str | None = None,
        on_deadline_risk: str | None = None, code=None, shared_pools: bool = False,
        bookkeeping: str = "auto") -> dict:
    """Run ``graph`` and return the report (see ``orchestrator.report``).

    ``runner`` is a name (threads, processes, dask, ray) or a runner object the
    caller has already entered. ``max_concurrency`` defaults to the runner's
    capacity; ``workers`` to ``max_concurrency`` or 8. ``skip`` names services
    that already completed (a resumed run): they are neither run nor waited on.
    ``control`` (a ``RunControl``) lets another thread or a signal handler cancel the run.
    ``history`` (an ``inputs.history.History``): estimates come from it, and every attempt
    is recorded in it as it ends (under ``run_id``). ``cpu_aware``: admit services only
    while their CPU demand fits the cores. ``secrets``: names of environment variables
    every worker masks. ``log_dir``: where an attempt's log lines beyond what Prefect
    keeps are written. ``deadline`` (a ``planning.deadline.Deadline``, or WHEN as ``--deadline``
    takes it): watched while the run goes (``flows.deadlines``); ``on_deadline_risk``: the
    shell command run when it is at risk. The report then has ``deadline``. ``code`` (a
    ``runners.base.Code``, from ``execution.shipping.code_for``): the service code a cluster
    runner ships to its workers; by default, with ``address``, the project's (the current
    folder's); ``False``: nothing shipped. ``shared_pools``: each pool's slots are shared with
    every other refresh on the same Prefect server (``flows.shared_pools``); the report then has
    ``shared_pools`` (the limits in force) and each service's ``shared_wait_s``. ``bookkeeping``:
    where Prefect's bookkeeping runs (``refresh_in_flow``).
    """
    prefect_env_defaults()
    if isinstance(deadline, str):
        import time

        deadline = resolve_deadline(deadline, time.time())
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
    shared_limits = None
    if shared_pools:  # before any engine starts: no server to share through costs nothing
        from .shared_pools import shared_graph

        # the server's limit wins (see flows.shared_pools): this refresh plans and keeps to it too
        graph, shared_limits = shared_graph(graph)
    with ExitStack() as stack:
        from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as STARTUP
        from prefect.settings import temporary_settings

        # this run's own copy of the settings, whatever it changes (api_unreachable): the
        # start-up timeout too, as settings were read at import and the env default may be too late
        stack.enter_context(temporary_settings(updates={STARTUP: max(STARTUP.value(), 90)}))
        server = _temporary_server()
        if server is not None:  # it starts while the runner does; processes started now inherit its URL
            stack.enter_context(_pointed_at(server.url))
        if isinstance(runner, str):
            if code is None and address:
                from ..execution.shipping import code_for

                code = code_for(graph, runner, address)
            runner = stack.enter_context(started(runner, workers or max_concurrency or DEFAULT_CONCURRENCY,
                                                  address, code or None))
        if server is not None:
            server.wait_ready()
        limit = max_concurrency or runner.capacity
        inputs = planning_inputs(graph, runner.name, runner, history)
        plan = make_plan(graph, limit, estimates=inputs.estimates, machine=inputs.machine, cpu_aware=cpu_aware)
        watch = watch_for(deadline, graph.names, inputs.observed, runner.name, on_deadline_risk, run_id)
        if on_plan is not None:
            on_plan(plan)
        result: dict = {}
        recording = [] if history is None else [
            HistoryObserver(history, run_id or uuid.uuid4().hex, runner.name, inputs.machine.cores, limit, graph.pools,
                            busy=busy_for(runner))]

        def refresh(graph_source: str, runner_name: str, max_concurrency: int, services: int):
            return refresh_in_flow(plan, runner, [*observers, *recording], result, control, secrets=secrets,
                                   log_dir=log_dir, deadline=watch, shared_pools=shared_limits,
                                   bookkeeping=bookkeeping)

        refresh_flow = flow(name=flow_name, log_prints=False, persist_result=False,
                            validate_parameters=False)(refresh)
        try:
            with _SilentOnceGone(result):
                state = refresh_flow(graph.source or "<python>", runner.name, limit, len(graph), return_state=True)
        except Exception:  # the engine could not record the final state: said, and in the report
            if "unreachable" not in result or "report" not in result:
                raise
            state = None
        if "unreachable" not in result:
            drain()  # deliver the last log lines and events before a temporary server stops
    if "report" not in result:  # the flow run crashed before the dispatcher finished
        raise RuntimeError(f"the refresh flow run ended without a report: {state.message}")
    report = result["report"]
    if json_report:
        write_report(report, json_report)
    return report


def refresh_in_flow(plan, runner, observers: Iterable = (), result: dict | None = None,
                    control: RunControl | None = None, secrets: Iterable[str] = (), log_dir: str | None = None,
                    deadline: DeadlineWatch | None = None, shared_pools: dict[str, int] | None = None,
                    bookkeeping: str = "auto"):
    """Run ``plan`` inside the current Prefect flow run; the report goes to ``result["report"]``.
    ``bookkeeping``: where Prefect's bookkeeping runs, ``"thread"``, ``"process"`` or ``"auto"``
    (a process of its own for a refresh of ``recorder_process.MIN_SERVICES`` services or more).
    ``deadline``: watched while it runs, flagged when at risk (``flows.deadlines``).
    ``shared_pools`` (the limits in force, from ``shared_pools.ensure_limits``): every pooled
    attempt also holds a slot of the pool's Prefect global concurrency limit.

    Returns what the flow run should end with: a Failed state naming the failed
    services, or the report's summary fields.
    """
    from prefect.context import FlowRunContext
    from prefect.states import Cancelled, Failed

    from ..execution.dispatcher import Dispatcher
    from . import recorder_process
    from .deadlines import watcher as deadline_watcher
    from .recorder import PrefectRecorder

    result = {} if result is None else result
    flow_run_id = FlowRunContext.get().flow_run.id
    for obs in observers:  # the history rows name the flow run too
        if isinstance(obs, HistoryObserver):
            obs.flow_run_id = str(flow_run_id)
    with ExitStack() as stack:
        recorder = None
        if bookkeeping == "process" or (bookkeeping == "auto" and recorder_process.wanted(plan.graph)):
            try:
                recorder = stack.enter_context(recorder_process.RecorderProcess(
                    plan.graph, flow_run_id, log_dir=log_dir, secrets=tuple(secrets)))
            except OSError as exc:  # no process to be had (a process limit, memory): the books stay here
                logging.getLogger("critpath").warning(
                    f"critpath: could not start the Prefect bookkeeping process ({type(exc).__name__}: {exc}); "
                    "keeping the books on a thread of this process instead")
        if recorder is None:
            recorder = stack.enter_context(PrefectRecorder(plan.graph, flow_run_id, log_dir=log_dir))
        shared = None
        if shared_pools is not None:
            from .shared_pools import PrefectSharedSlots

            shared = stack.enter_context(PrefectSharedSlots(flow_run_id))
        watcher = deadline_watcher(plan, deadline, flow_run_id, FlowRunContext.get().flow.name)
        dispatcher = Dispatcher(plan, runner, [recorder, *observers, *([watcher] if watcher else [])],
                                max_concurrency=plan.max_concurrency, secrets=tuple(secrets), shared=shared)
        if control is not None:
            control.attach(dispatcher)
        # Prefect installs its own SIGTERM handler when the flow run starts: take the
        # signals back for the rest of the flow run (only the main thread can)
        import threading

        guard = (cancel_on_signals(control, keep=True) if control is not None and control.handles_signals
                 and threading.current_thread() is threading.main_thread() else nullcontext())
        with guard, watcher or nullcontext():  # its events go out before the recorder drains
            runs = dispatcher.run()
        gone = api_unreachable()
        if gone:  # nothing more to wait for: the flow run ends, the report says what was lost
            recorder.abandon(gone)
            result["unreachable"] = gone
    for obs in observers:
        if isinstance(obs, HistoryObserver):
            obs.close()
    report = build_report(plan, runs, dispatcher, runner.name, flow_run_id)
    # how long after the first dispatch Prefect had stored every final state
    report["prefect_recorded_s"] = (recorder.recorded_at - dispatcher.first_dispatch
                                    if dispatcher.first_dispatch else 0.0)
    report["prefect_confirmed"] = recorder.confirmed
    # what Prefect's bookkeeping lost (events refused, final states not stored): [] when none
    report["prefect_errors"] = list(recorder.errors)
    report["signal"] = control.signal if control is not None else None
    report["shared_pools"] = dict(shared_pools) if shared_pools is not None else None
    if watcher is not None:
        report["deadline"] = watcher.report(dispatcher.last_completion, complete=not (
            report["failed"] or report["skipped"] or report["cancelled"] or report["not_run"]))
    result["report"] = report
    if dispatcher.cancelled:
        return Cancelled(message=f"{dispatcher.cancelled}: {len(report['cancelled'])} service(s) cancelled in "
                                 f"flight, {len(report['not_run'])} not started")
    if report["failed"]:
        return Failed(message=f"{len(report['failed'])} service(s) failed: "
                              f"{', '.join(report['failed'])}; {len(report['skipped'])} skipped")
    return {k: v for k, v in report.items() if k != "services"}


def api_unreachable() -> str | None:
    """None when Prefect's API answers now. Else, from then on, this run's Prefect client
    fails at once instead of retrying for minutes (Prefect's default: 5 retries backing off
    to 32 s, per request), sends no more log lines, and drops the events and lines it still
    held; returns one line saying so, also printed on stderr."""
    from prefect.client.orchestration import get_client
    from prefect.settings import (
        PREFECT_API_REQUEST_TIMEOUT,
        PREFECT_CLIENT_MAX_RETRIES,
        get_current_settings,
        temporary_settings,
    )

    with temporary_settings(updates={PREFECT_CLIENT_MAX_RETRIES: 0, PREFECT_API_REQUEST_TIMEOUT: PROBE_TIMEOUT_S}):
        with get_client(sync_client=True) as client:
            failure, url = client.api_healthcheck(), client.api_url
    if failure is None:
        return None
    # this run's own copy of the settings (see run()), which the flow engine reads next to
    # record the flow run's final state; Prefect re-reads these on every request
    settings = get_current_settings()
    settings.client.max_retries = 0
    settings.api.request_timeout = PROBE_TIMEOUT_S
    settings.logging.to_api.enabled = False
    dropped = discard_undelivered()
    reason = str(failure).splitlines()[0] if str(failure) else ""
    why = (f"the Prefect server at {str(url).rstrip('/')} does not answer ({type(failure).__name__}: {reason}): "
           f"the flow run's final state is not recorded there"
           + (f", nor {dropped} event(s) and log line(s) not yet sent" if dropped else ""))
    try:
        print(f"critpath: {why}", file=sys.stderr, flush=True)
    except (OSError, ValueError):  # no stderr to write to
        pass
    return why


class _SilentOnceGone(logging.Filter):
    """Drops Prefect's own reports of the API being gone (a traceback from the flow engine,
    connection warnings) once ``api_unreachable`` has said it in one line."""

    LOGGERS = ("prefect.flow_runs", "prefect.events.clients", "prefect._internal.concurrency")

    def __init__(self, result: dict):
        super().__init__()
        self.result = result

    def filter(self, record: logging.LogRecord) -> bool:
        return "unreachable" not in self.result

    def __enter__(self):
        for name in self.LOGGERS:
            logging.getLogger(name).addFilter(self)
        return self

    def __exit__(self, *exc):
        for name in self.LOGGERS:
            logging.getLogger(name).removeFilter(self)


def _temporary_server():
    """critpath's temporary server (``server.temporary_api``), launched, when this run needs
    one: no PREFECT_API_URL, and not inside a flow run of the caller's (a subflow must be
    recorded where its parent is). None otherwise."""
    from prefect.context import FlowRunContext
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_ALLOW_EPHEMERAL_MODE

    if PREFECT_API_URL.value() or FlowRunContext.get() is not None or not PREFECT_SERVER_ALLOW_EPHEMERAL_MODE.value():
        return None
    return temporary_api()


@contextmanager
def _pointed_at(url: str):
    """Prefect's API is ``url`` for this run: in the settings, and in the environment
    for the processes the run starts."""
    import os

    from prefect.settings import PREFECT_API_URL, temporary_settings

    before = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield
    finally:
        if before is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = before
