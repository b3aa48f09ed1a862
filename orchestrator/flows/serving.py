"""Scheduled refreshes: the refresh as a Prefect deployment, and a local Prefect server.

``critpath serve`` serves ``refresh`` (below) with ``Flow.serve``. It is a
module-level flow, so Prefect's runner can start each scheduled run from its
module path (``orchestrator.flows.serving.refresh``) in a fresh process. Each run
loads the graph and configuration from the project folder, as ``critpath run``
does, and records every service as a task run of *that* flow run, not of a
subflow. Prefect owns the schedule (cron or interval), the run history and the UI.

``critpath server`` starts ``prefect server start`` on 127.0.0.1 with its SQLite
database under the project's state folder, so local runs persist and show in
the UI once ``PREFECT_API_URL`` points at it.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from prefect import flow


def _after_refresh(flow, flow_run, state) -> None:
    """The refresh's ``on_completion`` and ``on_failure`` hook: with ``skip``, one follow-up for
    the events whose runs collided with it (``triggers.follow_up_after``). A hook runs once the
    run's final state is stored, so the deployment's slot is free: a follow-up created while
    the run still held it would collide in turn, and be cancelled with nobody left to follow it
    up. A cancelled refresh (serve stopping) starts none."""
    from .triggers import follow_up_after

    follow_up_after(flow_run)


@flow(name="critpath-refresh", log_prints=False, persist_result=False,
      on_completion=[_after_refresh], on_failure=[_after_refresh])
def refresh(folder: str = ".", config: str | None = None, graph: str | None = None, modules: str | None = None,
            runner: str | None = None, select: str | None = None, max_concurrency: int | None = None,
            workers: int | None = None, address: str | None = None, deadline: str | None = None,
            state_dir: str | None = None, event: str | None = None):
    """One refresh of the project in ``folder``, inside this flow run. ``deadline`` (else the
    config's): WHEN as ``--deadline`` takes it, resolved as this run starts, so ``HH:MM`` is its
    next occurrence after the start and ``+DURATION`` counts from it. ``state_dir`` (else the
    config's): where reports and history go; a deployed run gives one outside its clone, which
    the worker deletes after the run. ``event``: the resource ids (``critpath.service.<name>``,
    comma-separated) of the events this run is for; it then refreshes each ``<name>+`` only,
    with whatever waited behind it (``flows.triggers``)."""
    import threading
    import uuid
    from contextlib import nullcontext

    from ..execution.control import RunControl, cancel_on_signals
    from ..execution.deadline import watch_for
    from ..execution.engines import started
    from ..execution.machines import busy_for, planning_inputs
    from ..execution.recording import HistoryObserver
    from ..execution.report import write_report
    from ..inputs.history import History
    from ..inputs.project import load_inputs
    from ..inputs.project import select as select_services
    from ..planning.planner import make_plan
    from ..planning.ranges import DEFAULT_CONCURRENCY
    from ..planning.validate import validate
    from .flow import refresh_in_flow

    os.chdir(folder)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    g, cfg = load_inputs(graph, modules, config, (), None)
    if state_dir:
        import dataclasses

        cfg = dataclasses.replace(cfg, state_dir=state_dir)
    validate(g)
    due = _deadline(deadline or cfg.deadline, cfg.deadline_margin)
    g = select_services(g, select, cfg)
    from .triggers import coalesced

    lock, g, why = coalesced(g, cfg.state_dir, event)
    if g is None:  # nothing of the served graph to refresh: said in the run's state
        from prefect.states import Completed

        return Completed(message=why)
    name = runner or cfg.runner
    limit = max_concurrency or cfg.max_concurrency
    shared = None
    if cfg.shared_pools:  # as `critpath run --shared-pools`: the server's limits, where it has them
        from .shared_pools import shared_graph

        g, shared = shared_graph(g)
    # When serve stops (Ctrl-C) Prefect's runner cancels in-flight runs with SIGTERM.
    # Prefect's own handler raises TerminationSignal wherever the main thread happens
    # to be (even in a finalizer, where it is ignored and only printed); critpath's
    # handler cancels the refresh instead: work stops on the engine, the run ends Cancelled.
    control = RunControl()
    main = threading.current_thread() is threading.main_thread()
    with cancel_on_signals(control, keep=True) if main else nullcontext():
        from ..execution.shipping import code_for

        code = code_for(g, name, address or cfg.address, ship=cfg.ship, requirements=cfg.requirements,
                        modules=[m for m in (modules or "").split(",") if m] or list(cfg.modules),
                        state_dir=cfg.state_dir)
        with started(name, workers or cfg.workers or limit or DEFAULT_CONCURRENCY, address or cfg.address,
                     code) as r, \
                History(cfg.state_dir, keep_runs=cfg.history_runs) as history:
            # served refreshes plan from history and add to it, as `critpath run` does
            inputs = planning_inputs(g, r.name, r, history)
            plan = make_plan(g, limit or r.capacity, estimates=inputs.estimates, machine=inputs.machine,
                             cpu_aware=cfg.cpu_aware)
            recording = HistoryObserver(history, uuid.uuid4().hex, r.name, inputs.machine.cores,
                                        plan.max_concurrency, g.pools, busy=busy_for(r))
            result: dict = {}
            watch = watch_for(due, g.names, inputs.observed, r.name, cfg.on_deadline_risk)
            outcome = refresh_in_flow(plan, r, (recording,), result, control if main else None,
                                      secrets=cfg.secrets, deadline=watch, shared_pools=shared)
    report = result["report"]
    runs = Path(cfg.state_dir) / "runs"
    write_report(report, runs / f"{report['flow_run_id']}.json")
    write_report(report, Path(cfg.state_dir) / "last-run.json")
    lock.release()
    if control.reason:  # with `skip`, the events that collided with a finished run come next (_after_refresh)
        _end_without_finalizing()
    return outcome


def _end_without_finalizing() -> None:
    """A cancelled refresh may leave service threads running native code (DuckDB, Arrow) that
    the threads runner abandoned. At interpreter shutdown such a thread, coming back to Python,
    is ended by ``pthread_exit``, whose unwinding through C++ frames aborted the process
    (``terminate called after throwing an instance of ''``, status -6). So once Prefect's own
    work is done (the flow run's final state is stored before the interpreter exits), the
    process ends at the first exit hook, after delivering what Prefect still buffers."""
    import atexit

    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run.deployment_id is None:  # not a process of the runner's own
        return

    def end() -> None:
        from .server import drain

        try:
            drain()
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            os._exit(0)

    atexit.register(end)  # last registered, first run: before finalization ends the threads


def _deadline(given: str | None, margin_s: float):
    """The deadline of this served run, resolved now; None without one. One that cannot be
    resolved now (an absolute time already past) is said in the flow run's log, and the
    refresh runs without it: a stale deadline must not cost the data."""
    if not given:
        return None
    import time

    from prefect.logging import get_run_logger

    from ..planning.deadline import resolve
    from ..planning.errors import CritpathError

    try:
        return resolve(given, time.time(), margin_s=margin_s, what="deadline")
    except CritpathError as exc:
        get_run_logger().warning(f"critpath: {exc}; this run has no deadline")
        return None


def end_children(grace_s: float) -> int:
    """SIGTERM to this process's children still running (a refresh cancels itself on it and
    ends ``Cancelled``), then, after ``grace_s`` seconds, SIGKILL to what is left of them and
    their descendants; returns how many there were. Polls rather than waits: waiting would
    reap children from under asyncio's own watcher."""
    import time

    import psutil

    children = [c for c in psutil.Process().children() if _alive(c)]
    if not children:
        return 0
    family = {c.pid: c for c in children}
    for child in children:
        try:
            family.update((d.pid, d) for d in child.children(recursive=True))
            child.terminate()
        except psutil.Error:
            pass
    end = time.monotonic() + grace_s
    while time.monotonic() < end and any(_alive(c) for c in children):
        time.sleep(0.2)
    for p in family.values():
        if _alive(p):
            try:
                p.kill()
            except psutil.Error:
                pass
    return len(children)


def _alive(p) -> bool:
    import psutil

    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def serve_forever(name: str, cron: str | None, interval: float | None, parameters: dict,
                  timezone: str | None = None, collision: str = "queue", debounce: float = 2.0) -> int:
    """Serve until Ctrl-C; returns the exit status.

    Prefect's serve loop runs in a child process in a session of its own, and so
    do the flow runs it starts. A terminal's Ctrl-C goes to its foreground process
    group only: this process. It then sends the child SIGTERM, which Prefect's
    runner treats as "shut down gracefully". Without the separate session, the
    Ctrl-C also reached every flow-run subprocess, which died mid-refresh with
    KeyboardInterrupt tracebacks.
    """
    import json
    import signal
    import subprocess

    spec = json.dumps({"name": name, "cron": cron, "interval": interval, "parameters": parameters,
                       "timezone": timezone, "collision": collision, "debounce": debounce})

    def terminated(signum, frame):  # SIGTERM (systemd, kill) stops serving as Ctrl-C does
        raise KeyboardInterrupt

    child = subprocess.Popen([sys.executable, "-m", "orchestrator.flows.serving", spec], start_new_session=True)
    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        return child.wait()
    except KeyboardInterrupt:
        signal.signal(signal.SIGTERM, previous)
        child.send_signal(signal.SIGTERM)
        try:  # the child's stop is bounded (runner, its processes, the sweep): about 90 s at worst
            child.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
        except KeyboardInterrupt:  # a second Ctrl-C: stop now
            os.killpg(child.pid, signal.SIGKILL)
        return 0


def schedule_of(cron: str | None, interval: float | None, timezone: str | None):
    """The deployment's schedule, in ``timezone`` (an IANA name; None: UTC)."""
    import datetime

    from prefect.schedules import Cron, Interval

    if cron is not None:
        return Cron(cron, timezone=timezone)
    return Interval(datetime.timedelta(seconds=interval), timezone=timezone)


def _serve_in_this_process(name: str, cron: str | None, interval: float | None, parameters: dict,
                           timezone: str | None = None, collision: str = "queue", debounce: float = 2.0) -> None:
    """``Flow.serve``, with a SIGTERM that stops the runner from inside its event loop.

    Prefect's runner handles SIGTERM by calling ``sys.exit`` from the signal handler,
    wherever the loop is, and its pending tasks then die printing tracebacks. Here the
    signal only sets an event; the loop then awaits ``Runner.astop()``, which cancels
    in-flight runs (their processes get SIGTERM, and critpath's handler in ``refresh``
    cancels each refresh, which ends Cancelled), and returns.

    The deployment has a concurrency limit of 1 (``collision``: queue or skip) and a trigger
    on ``critpath.service.updated`` (``flows.triggers``); its schedule is optional. Once the
    runner has stopped, the deployment stands down (schedule paused, trigger disabled) and
    the runs still waiting are deleted: nothing fires at a server nobody serves. Serving
    again applies the deployment unpaused, with its trigger enabled.
    """
    import asyncio
    import signal

    from prefect.client.orchestration import get_client
    from prefect.deployments.runner import EntrypointType
    from prefect.runner import Runner

    from .triggers import deployment_options, end_orphans, remove_waiting, stand_down

    runner = Runner(name=name, pause_on_shutdown=False)
    scheduled = cron is not None or interval is not None
    deployment_id = runner.add_flow(
        refresh, name=name, schedule=schedule_of(cron, interval, timezone) if scheduled else None, paused=False,
        parameters=parameters, entrypoint_type=EntrypointType.MODULE_PATH,
        **deployment_options(collision, debounce))
    print(f"critpath: serving deployment 'critpath-refresh/{name}' ("
          + ("on its schedule and " if scheduled else "") + "on events critpath.service.updated, "
          f"one refresh at a time, collisions: {collision}); Ctrl-C stops. Start a run now with:\n"
          f"  prefect deployment run 'critpath-refresh/{name}'   or   critpath emit SERVICE", flush=True)

    async def main() -> None:
        started = asyncio.create_task(runner.start())
        await asyncio.sleep(0)  # start() installs Prefect's SIGTERM handler before its first await
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait([started, stopping], return_when=asyncio.FIRST_COMPLETED)
        if started.done():
            stopping.cancel()
            return started.result()
        # The runner stops first: pausing the deployment makes the server delete its scheduled
        # runs, and a runner still polling then fails to submit one it had just fetched (a 404
        # that Prefect logs as an error with a traceback). Whatever the schedule or the trigger
        # creates meanwhile is deleted below with the rest.
        await runner.astop()
        try:
            await asyncio.wait_for(started, 30)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            pass
        # a refresh the runner started as it stopped is not among those it cancelled
        await asyncio.to_thread(end_children, 20.0)
        problem, removed, orphans = None, 0, []
        try:
            async with get_client() as client:
                await stand_down(client, deployment_id)
                removed = await remove_waiting(client, deployment_id)
                orphans = await end_orphans(client, deployment_id)
        except Exception as exc:  # the server is gone: stop serving all the same
            problem = exc
        if orphans:
            print(f"critpath: {len(orphans)} refresh(es) had ended without a final state; marked Cancelled: "
                  + ", ".join(orphans), flush=True)
        if problem is not None:
            print(f"critpath: could not stand the deployment 'critpath-refresh/{name}' down "
                  f"({type(problem).__name__}: {str(problem).splitlines()[0] if str(problem) else ''}); "
                  "pause it in the Prefect UI once the server answers",
                  file=sys.stderr, flush=True)
        else:
            print(f"critpath: paused deployment 'critpath-refresh/{name}' (schedule and event trigger); "
                  f"removed {removed} run(s) waiting for it", flush=True)

    asyncio.run(main())


def server_command(state_dir: str, host: str, port: int) -> tuple[list[str], dict]:
    """The ``prefect server start`` command line and environment for ``critpath server``."""
    home = Path(state_dir, "prefect").absolute()
    home.mkdir(parents=True, exist_ok=True)
    from .settings import SERVER_DEFAULTS, server_fixes

    env = {**SERVER_DEFAULTS, **os.environ, "PREFECT_HOME": str(home)}
    env.update(server_fixes(env))
    env.pop("PREFECT_API_URL", None)
    # the UI asks this address for its data; Prefect's default is port 4200 whatever --port says
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else f"[{host}]" if ":" in host else host
    env.setdefault("PREFECT_UI_API_URL", f"http://{shown}:{port}/api")
    return [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)], env


if __name__ == "__main__":  # the child started by serve_forever
    import json

    _serve_in_this_process(**json.loads(sys.argv[1]))
