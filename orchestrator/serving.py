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


def serve(name: str, cron: str | None, interval: float | None, parameters: dict) -> None:
    from prefect.deployments.runner import EntrypointType

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
