"""Scheduled refreshes: the refresh as a Prefect deployment, and a local Prefect server.

``critpath serve`` serves ``refresh`` (below) with ``Flow.serve``. It is a
module-level flow, so Prefect's runner can start each scheduled run from its
module path (``orchestrator.serving.refresh``) in a fresh process. Each run
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


@flow(name="critpath-refresh", log_prints=False, persist_result=False)
def refresh(folder: str = ".", config: str | None = None, graph: str | None = None, modules: str | None = None,
            runner: str | None = None, select: str | None = None, max_concurrency: int | None = None,
            workers: int | None = None, address: str | None = None):
    """One refresh of the project in ``folder``, inside this flow run."""
    from .cli import load_inputs
    from .flow import DEFAULT_CONCURRENCY, refresh_in_flow, started
    from .planner import make_plan
    from .report import write_report
    from .validate import validate

    os.chdir(folder)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    g, cfg = load_inputs(graph, modules, config, (), None)
    validate(g)
    g = g.select(select or cfg.select)
    name = runner or cfg.runner
    limit = max_concurrency or cfg.max_concurrency
    with started(name, workers or cfg.workers or limit or DEFAULT_CONCURRENCY, address or cfg.address) as r:
        plan = make_plan(g, limit or r.capacity)
        result: dict = {}
        outcome = refresh_in_flow(plan, r, (), result)
    report = result["report"]
    runs = Path(cfg.state_dir) / "runs"
    write_report(report, runs / f"{report['flow_run_id']}.json")
    write_report(report, Path(cfg.state_dir) / "last-run.json")
    return outcome


def serve_forever(name: str, cron: str | None, interval: float | None, parameters: dict) -> int:
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

    spec = json.dumps({"name": name, "cron": cron, "interval": interval, "parameters": parameters})
    child = subprocess.Popen([sys.executable, "-m", "orchestrator.serving", spec], start_new_session=True)
    try:
        return child.wait()
    except KeyboardInterrupt:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
        except KeyboardInterrupt:  # a second Ctrl-C: stop now
            os.killpg(child.pid, signal.SIGKILL)
        return 0


def _serve_in_this_process(name: str, cron: str | None, interval: float | None, parameters: dict) -> None:
    import warnings

    from prefect.deployments.runner import EntrypointType

    # Prefect's SIGTERM handler calls the async Runner.stop() without awaiting it
    warnings.filterwarnings("ignore", message="coroutine 'Runner.astop' was never awaited")
    refresh.serve(name=name, cron=cron, interval=interval, parameters=parameters,
                  entrypoint_type=EntrypointType.MODULE_PATH, pause_on_shutdown=False,
                  print_starting_message=True)


def server_command(state_dir: str, host: str, port: int) -> tuple[list[str], dict]:
    """The ``prefect server start`` command line and environment for ``critpath server``."""
    home = Path(state_dir, "prefect").absolute()
    home.mkdir(parents=True, exist_ok=True)
    from .flow import SERVER_DEFAULTS

    env = {**SERVER_DEFAULTS, **os.environ, "PREFECT_HOME": str(home)}
    env.pop("PREFECT_API_URL", None)
    return [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)], env


if __name__ == "__main__":  # the child started by serve_forever
    import json

    _serve_in_this_process(**json.loads(sys.argv[1]))
