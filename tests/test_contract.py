"""The runner contract: what ``run()`` promises on every runner, checked on one refresh each.

One graph exercises order, limits, failure isolation, retries and logs at once. It runs
once per runner (``contract`` is module-scoped, ``runner_name`` parametrized over threads,
processes, dask, ray) against a real Prefect server; every test below asserts on that one
report or on what the Prefect API recorded. Nothing asserts a duration: only the order of
worker-measured timestamps, counts, states and texts. Timeouts have their own refresh
(test_timeouts.py), so that a runner's trouble stopping a body cannot blur these results.

    max_concurrency=2, pool db (limit 1); "a, b -> c" means c runs after a and b

    meet_a   meet_b                     each waits until the other runs: both slots at once
                                        (estimate 100: they are dispatched first)
    extract -> transform -> log_line -> publish         log_line logs one INFO line (stdlib)
    publish, db_1, db_2, db_3 -> fan_in                 db_*: pool db, never two at once
                                                        (estimate 2: they lead the rest)
    boom -> boom_child -> boom_grandchild               boom raises ValueError
    extract, boom -> joins
    flaky_ok   (fails twice, retries=2)  -> completed on attempt 3
    flaky_out  (fails twice, retries=1)  -> failed after 2 attempts;  flaky_out -> flaky_out_child
    solo

    failed:  boom, flaky_out
    skipped: boom_child, boom_grandchild, flaky_out_child, joins
"""
from __future__ import annotations

import logging
import os
import uuid
from itertools import pairwise
from types import SimpleNamespace

import pytest

from orchestrator.flows.flow import run
from orchestrator.planning.errors import GraphError
from orchestrator.planning.graph import Graph
from tests.helpers.graphs import call, synth, worker_pid
from tests.helpers.schedule import attempt_intervals, max_overlap, order_violations
from tests.prefect_fixtures import api, readback

MAX_CONCURRENCY = 2
POOLS = {"db": 1}
FAILED = ["boom", "flaky_out"]
SKIPPED = ["boom_child", "boom_grandchild", "flaky_out_child", "joins"]
MEET_S = 30.0  # how long a rendezvous waits for its partner before it fails
#: where Prefect's bookkeeping runs (``flows.recorder_process``): this graph is small enough for a
#: thread, and a large one gets a process; the contract holds for both, on a local runner and a cluster
BOOKKEEPING = {"threads": "process", "processes": "thread", "dask": "process", "ray": "thread"}


def contract_graph(tmp, token: str) -> Graph:
    meet = {"seconds": MEET_S}
    return Graph([
        call("meet_a", "rendezvous", estimate=100.0, params={**meet, "me": str(tmp / "a"), "other": str(tmp / "b")}),
        call("meet_b", "rendezvous", estimate=100.0, params={**meet, "me": str(tmp / "b"), "other": str(tmp / "a")}),
        synth("extract", 0.1),
        synth("transform", 0.1, ["extract"]),
        call("log_line", "chatty", ["transform"], params={"message": f"rows loaded {token}"}),
        synth("publish", 0.05, ["log_line"]),
        synth("fan_in", 0.05, ["publish", "db_1", "db_2", "db_3"]),
        call("boom", "boom", params={"message": f"bad row {token}"}),
        synth("boom_child", 0.05, ["boom"]),
        synth("boom_grandchild", 0.05, ["boom_child"]),
        synth("joins", 0.05, ["extract", "boom"]),
        *[synth(f"db_{i}", 0.1, pool="db", estimate=2.0) for i in (1, 2, 3)],
        call("flaky_ok", "flaky", retries=2, params={"counter": str(tmp / "flaky_ok.calls"), "failures": 2}),
        call("flaky_out", "flaky", retries=1, params={"counter": str(tmp / "flaky_out.calls"), "failures": 2}),
        synth("flaky_out_child", 0.05, ["flaky_out"]),
        synth("solo", 0.05),
    ], pools=POOLS)


@pytest.fixture(scope="module")
def contract(runner_name, prefect_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"contract-{runner_name}")
    token = uuid.uuid4().hex
    graph = contract_graph(tmp, token)
    with api(prefect_server):
        report = run(graph, runner_name, max_concurrency=MAX_CONCURRENCY, workers=MAX_CONCURRENCY,
                     bookkeeping=BOOKKEEPING[runner_name])
    rb = readback(prefect_server, report["flow_run_id"], graph.names,
                  expect_logs={"log_line": token, "boom": token})
    return SimpleNamespace(runner=runner_name, graph=graph, report=report, api=rb, tmp=tmp, token=token)


# -- the report -------------------------------------------------------------------------------

def test_every_service_has_a_final_state(contract):
    services = contract.report["services"]
    assert sorted(services) == contract.graph.names
    assert {n: s["state"] for n, s in services.items() if s["state"] not in ("completed", "failed", "skipped")} == {}
    # no attempt was lost to the infrastructure (a lost attempt is retried for free and hides here)
    assert [n for n, s in services.items() if s["lost_worker"]] == []
    assert contract.report["runner"] == contract.runner
    assert contract.report["max_concurrency"] == MAX_CONCURRENCY


def test_failure_isolation_is_exact(contract):
    report = contract.report
    assert report["failed"] == FAILED
    assert report["skipped"] == SKIPPED
    completed = sorted(n for n, s in report["services"].items() if s["state"] == "completed")
    assert completed == sorted(set(contract.graph.names) - set(FAILED) - set(SKIPPED))


def test_skipped_services_never_ran_and_name_their_failed_upstream(contract):
    services = contract.report["services"]
    for name in SKIPPED:
        s = services[name]
        assert (s["attempts"], s["start"], s["attempt_history"]) == (0, None, []), name
    assert {n: services[n]["skipped_because"] for n in SKIPPED} == {
        "boom_child": "boom", "boom_grandchild": "boom", "flaky_out_child": "flaky_out", "joins": "boom"}


def test_a_raising_service_fails_with_its_error(contract):
    boom = contract.report["services"]["boom"]
    assert boom["attempts"] == 1
    assert boom["error"] == f"ValueError: bad row {contract.token}"


def test_dependency_order_from_worker_timestamps(contract):
    assert order_violations(contract.report, contract.graph.edges) == []


def test_concurrency_limit_never_exceeded(contract):
    # meet_a and meet_b only complete by running at the same time: the limit is reached, never passed
    assert [contract.report["services"][n]["state"] for n in ("meet_a", "meet_b")] == ["completed"] * 2
    assert max_overlap(attempt_intervals(contract.report)) == MAX_CONCURRENCY


def test_pool_limit_never_exceeded(contract):
    db = [n for n in contract.graph.names if contract.graph.services[n].pool == "db"]
    assert [contract.report["services"][n]["state"] for n in db] == ["completed"] * 3
    assert max_overlap(attempt_intervals(contract.report, db)) == POOLS["db"]


def test_retried_service_completes_on_its_third_attempt(contract):
    s = contract.report["services"]["flaky_ok"]
    assert (s["state"], s["attempts"]) == ("completed", 3)
    assert [h["ok"] for h in s["attempt_history"]] == [False, False, True]
    assert [h["attempt"] for h in s["attempt_history"]] == [1, 2, 3]
    assert (contract.tmp / "flaky_ok.calls").read_text() == "3"


def test_retries_run_out(contract):
    s = contract.report["services"]["flaky_out"]
    assert (s["state"], s["attempts"]) == ("failed", 2)
    assert s["error"].startswith("RuntimeError: flaky: call 2 of 2")
    assert (contract.tmp / "flaky_out.calls").read_text() == "2"  # no third attempt


def test_attempts_of_one_service_never_overlap(contract):
    history = contract.report["services"]["flaky_ok"]["attempt_history"]
    assert all(a["end"] <= b["start"] for a, b in pairwise(history))


def test_services_ran_on_the_runners_workers(contract):
    services = contract.report["services"]
    workers = {n: s["worker"] for n, s in services.items() if s["state"] == "completed"}
    pids = {worker_pid(w) for w in workers.values()}
    if contract.runner == "threads":
        assert pids == {os.getpid()}
    else:
        assert os.getpid() not in pids
    # the two meets ran at the same time, so on two workers: two processes unless threads
    meet_a, meet_b = workers["meet_a"], workers["meet_b"]
    assert meet_a != meet_b
    assert (worker_pid(meet_a) == worker_pid(meet_b)) == (contract.runner == "threads")


# -- the Prefect API ------------------------------------------------------------------------

def test_one_task_run_per_service(contract):
    assert sorted(contract.api.task_runs) == contract.graph.names
    assert {str(tr.flow_run_id) for tr in contract.api.task_runs.values()} == {contract.report["flow_run_id"]}


def test_task_run_final_states(contract):
    expected = {"completed": ("COMPLETED", "Completed"), "failed": ("FAILED", "Failed"),
                "skipped": ("CANCELLED", "Skipped")}
    got = {n: (tr.state.type.value, tr.state.name) for n, tr in contract.api.task_runs.items()}
    assert got == {n: expected[s["state"]] for n, s in contract.report["services"].items()}


def test_task_run_counts_match_attempts(contract):
    """Prefect's own engine enters one running state per attempt: Running, then Retrying
    for each retry (AwaitingRetry, a scheduled state, in between when there is a delay)."""
    got = {n: tr.run_count for n, tr in contract.api.task_runs.items()}
    assert got == {n: s["attempts"] for n, s in contract.report["services"].items()}
    assert (got["flaky_ok"], got["flaky_out"], got["boom_child"]) == (3, 2, 0)


def test_upstream_task_runs_are_wait_for_inputs(contract):
    trs = contract.api.task_runs
    for name in contract.graph.names:
        ups = contract.graph.services[name].after
        got = {ref.id for ref in trs[name].task_inputs.get("wait_for", [])}
        assert got == {trs[u].id for u in ups}, name


def test_flow_run_failed_because_services_failed(contract):
    assert str(contract.api.flow_run.id) == contract.report["flow_run_id"]
    assert contract.api.flow_run.state.type.value == "FAILED"


def test_service_log_line_is_a_log_of_its_task_run(contract):
    logs = [g for g in contract.api.logs["log_line"] if g.message == f"rows loaded {contract.token}"]
    assert len(logs) == 1, contract.api.messages("log_line")
    assert (logs[0].level, logs[0].name) == (logging.INFO, "tests.helpers.services")
    assert logs[0].task_run_id == contract.api.task_runs["log_line"].id
    others = [n for n, lines in contract.api.logs.items() if n != "log_line"
              and any("rows loaded" in g.message for g in lines)]
    assert others == []


def test_failure_is_logged_on_the_failed_task_run(contract):
    errors = contract.api.messages("boom", logging.ERROR)
    assert any(f"ValueError: bad row {contract.token}" in m for m in errors), errors


# -- without a server ------------------------------------------------------------------------

@pytest.mark.server  # Prefect starts its temporary one
def test_runs_on_prefects_temporary_server_when_none_is_configured(tmp_path):
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    graph = Graph([synth("a", 0.05), synth("b", 0.05, ["a"]),
                   call("c", "chatty", ["b"], params={"message": "no server"})])
    with temporary_settings(updates={PREFECT_HOME: str(tmp_path)}, restore_defaults={PREFECT_API_URL}):
        assert PREFECT_API_URL.value() is None
        report = run(graph, "threads", max_concurrency=2, workers=2)
    assert uuid.UUID(report["flow_run_id"])
    assert (report["failed"], report["skipped"]) == ([], [])
    for name in graph.names:
        s = report["services"][name]
        assert (s["state"], s["attempts"], s["error"]) == ("completed", 1, None), name
        assert s["start"] <= s["end"] and s["worker"], name
    assert order_violations(report, graph.edges) == []


# -- what never reaches a runner ---------------------------------------------------------------

def test_a_call_to_a_missing_function_is_rejected_before_anything_runs():
    graph = Graph([synth("ok", 0.01), call("typo", "chaty")])
    with pytest.raises(GraphError, match=r"service 'typo'.*has no attribute 'chaty' \(did you mean 'chatty'\?\)"):
        run(graph, "threads", max_concurrency=1)
