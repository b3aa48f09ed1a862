"""``run()`` inside a user's own Prefect flow is a subflow of it.

    nightly (the user's flow)
      └── critpath-refresh (subflow)  ── task runs: extract -> load
"""
from __future__ import annotations

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext

from orchestrator.flows.flow import run
from orchestrator.planning.graph import Graph
from orchestrator.planning.model import Service


def test_run_inside_a_users_flow_is_a_subflow():
    parent: dict = {}

    @flow(name="nightly")
    def nightly():
        parent["id"] = FlowRunContext.get().flow_run.id
        return run(Graph([Service("extract", duration=0.01), Service("load", after=("extract",), duration=0.01)]),
                   "threads")

    report = nightly()
    assert {s["state"] for s in report["services"].values()} == {"completed"}
    with get_client(sync_client=True) as client:
        child = client.read_flow_run(report["flow_run_id"])
        assert child.id != parent["id"] and child.parent_task_run_id is not None
        assert client.read_task_run(child.parent_task_run_id).flow_run_id == parent["id"]
