"""A real Prefect server for the contract tests, and reading a refresh back through its API.

``prefect_server`` (session scope) starts ``prefect server start`` in a subprocess of its own
process group, with a private ``PREFECT_HOME`` (its own SQLite database) and no inherited
``PREFECT_API_URL``, waits for ``/api/health`` and yields the API URL. Tests point a refresh at
it with ``api(url)``; ``readback`` then fetches the flow run, its task runs and their logs.

The server persists task runs from the client's events asynchronously, after ``run()`` has
returned, and its API offers no way to wait for that; ``readback`` therefore re-reads until
every expected task run is present and final (or a deadline passes, and the assertions that
follow report what was missing). That is the one polling loop here, and it only bounds a test.

Prefect 3.8.8's server rejects ``read_task_runs``/``read_logs`` bodies whose ``limit``,
``offset`` or ``sort`` are null, so every read passes all three.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Iterable

import pytest

from orchestrator.flows import server as prefect_server_

#: how long readback waits for the server to persist what run() sent it
READBACK_TIMEOUT_S = 60
_PAGE = 200  # the server's default maximum for limit


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory) -> Iterable[str]:
    """The API URL (``http://127.0.0.1:PORT/api``) of a fresh ``prefect server start``."""
    # the repossessor hands back the slots of expired leases (a killed refresh's shared pool
    # slots, tests/test_shared_pools.py) once per loop: every second here, not every 15 s
    env = {**os.environ, "PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS": "1"}
    proc, url = prefect_server_.start(tmp_path_factory.mktemp("prefect-home"), env=env)
    try:
        yield url
    finally:
        prefect_server_.drain()
        prefect_server_.stop(proc)


def api(url: str | None):
    """Settings that send Prefect to ``url``; ``None`` is Prefect's temporary local server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if url is None:
        return temporary_settings(restore_defaults={PREFECT_API_URL})
    return temporary_settings(updates={PREFECT_API_URL: url})


@dataclass
class Readback:
    """What the Prefect API holds about one refresh."""

    flow_run: object
    task_runs: dict = field(default_factory=dict)  # name -> TaskRun
    logs: dict = field(default_factory=dict)  # name -> [Log], oldest first

    def messages(self, name: str, level: int | None = None) -> list[str]:
        return [g.message for g in self.logs.get(name, []) if level is None or g.level == level]


def readback(url: str, flow_run_id: str, names: Iterable[str], *, expect_logs: dict | None = None,
             timeout: float = READBACK_TIMEOUT_S) -> Readback:
    """The flow run, its task runs by name and their logs, once the server has them all.

    Waits until every name in ``names`` is a task run in a final state and, for each
    ``expect_logs[name]`` (a substring), a log line of that task run contains it.
    """
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterTaskRunId
    from prefect.client.schemas.sorting import LogSort, TaskRunSort

    names = set(names)
    expect_logs = expect_logs or {}
    fr_id = UUID(str(flow_run_id))
    deadline = time.monotonic() + timeout
    with api(url), get_client(sync_client=True) as client:
        while True:
            task_runs = {}
            offset = 0
            while True:
                page = client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[fr_id])),
                    sort=TaskRunSort.NAME_ASC, limit=_PAGE, offset=offset)
                task_runs.update((tr.name, tr) for tr in page)
                if len(page) < _PAGE:
                    break
                offset += _PAGE
            logs = {}
            for name, tr in task_runs.items():
                logs[name] = client.read_logs(
                    log_filter=LogFilter(task_run_id=LogFilterTaskRunId(any_=[tr.id])),
                    sort=LogSort.TIMESTAMP_ASC, limit=_PAGE, offset=0)
            done = (names <= task_runs.keys()
                    and all(tr.state is not None and tr.state.is_final() for tr in task_runs.values())
                    and all(any(text in g.message for g in logs.get(n, [])) for n, text in expect_logs.items()))
            if done or time.monotonic() > deadline:
                return Readback(client.read_flow_run(fr_id), task_runs, logs)
            time.sleep(0.25)
