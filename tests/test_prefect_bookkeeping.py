"""Prefect bookkeeping that fails is not silent: the report's ``prefect_errors`` and the summary say so.

A real failure, against the real session server: Prefect refuses to emit an event larger than
``server.events.maximum_size_bytes`` (``EventTooLarge``, raised by Prefect's own ``emit_event``).
Lowering that limit for one run, with a service that fails with a long error, makes exactly
one event too large: that service's Failed state, whose message carries the error. The service
still fails and its downstream is still skipped, as the report says; Prefect's record of it is
what is incomplete, and that is what the report and the summary must tell.
"""
from __future__ import annotations

import pytest
from prefect.settings import PREFECT_SERVER_EVENTS_MAXIMUM_SIZE_BYTES, temporary_settings

from orchestrator.flows.flow import run
from orchestrator.planning.graph import Graph
from orchestrator.planning.model import Service
from orchestrator.ui.summary import summary
from tests.prefect_fixtures import api, readback

#: small enough that a Failed event quoting LONG_ERROR (twice) is refused, large enough for every other event
MAX_EVENT_BYTES = 20_000
LONG_ERROR = "x" * 15_000


def _graph(error: str) -> Graph:
    return Graph([
        Service("extract", duration=0.01),
        Service("load", after=("extract",), duration=0.01),
        Service("noisy", call="tests.helpers.services:boom", params={"message": error}),
        Service("after_noisy", after=("noisy",), duration=0.01),
    ])


#: a thread of critpath's process, or a process of its own (``flows.recorder_process``): the same
#: books, the same errors, Prefect's settings of the run (a limit changed for it) the same in both
WHERE = pytest.mark.parametrize("bookkeeping", ["thread", "process"])


@WHERE
def test_a_clean_run_has_no_prefect_errors(prefect_server, bookkeeping):
    graph = _graph("short")
    with api(prefect_server):
        report = run(graph, "threads", max_concurrency=2, bookkeeping=bookkeeping)
    assert report["prefect_errors"] == []
    assert report["prefect_confirmed"] is True
    assert (report["failed"], report["skipped"]) == (["noisy"], ["after_noisy"])
    assert "PREFECT" not in summary(report)
    # and the server really holds every service's final state
    rb = readback(prefect_server, report["flow_run_id"], graph.names)
    assert {n: tr.state.name for n, tr in rb.task_runs.items()} == {
        "extract": "Completed", "load": "Completed", "noisy": "Failed", "after_noisy": "Skipped"}


@WHERE
def test_an_event_prefect_refuses_is_in_the_report_and_the_summary(prefect_server, bookkeeping):
    graph = _graph(LONG_ERROR)
    with api(prefect_server), temporary_settings(updates={PREFECT_SERVER_EVENTS_MAXIMUM_SIZE_BYTES: MAX_EVENT_BYTES}):
        report = run(graph, "threads", max_concurrency=2, bookkeeping=bookkeeping)
    # the run itself is reported as it happened
    assert (report["failed"], report["skipped"]) == (["noisy"], ["after_noisy"])
    assert report["services"]["noisy"]["error"] == f"ValueError: {LONG_ERROR}"
    # the one event Prefect refused: named, with Prefect's reason, and kept short
    errors = report["prefect_errors"]
    assert len(errors) == 1, errors
    assert errors[0].startswith("noisy (fail): EventTooLarge: Event is too large to emit")
    assert f"> {MAX_EVENT_BYTES} bytes" in errors[0]
    # everything that was sent was stored: the refusal does not make the run wait for it
    assert report["prefect_confirmed"] is True
    text = summary(report)
    assert f"PREFECT bookkeeping failed for 1 item(s), so the Prefect UI may not match this report; " \
           f"first: {errors[0]}" in text.splitlines()


def test_the_summary_reads_reports_from_before_prefect_errors():
    report = {
        "services": {"a": {"state": "completed", "attempts": 1, "attempt_history": []}},
        "runner": "threads", "max_concurrency": 1, "makespan_s": 1.0, "critical_path_s": 1.0,
        "critical_path": ["a"], "lower_bound_s": 1.0, "simulated_makespan_s": 1.0, "efficiency": 1.0,
        "failed": [], "skipped": [],
    }
    assert "PREFECT" not in summary(report)
    report["prefect_errors"] = ["a (complete): RuntimeError: one", "a (fail): RuntimeError: two"]
    assert summary(report).splitlines()[-1] == (
        "PREFECT bookkeeping failed for 2 item(s), so the Prefect UI may not match this report; "
        "first: a (complete): RuntimeError: one")


def test_no_bookkeeping_process_to_be_had_keeps_the_books_on_a_thread(prefect_server, monkeypatch, caplog):
    """When the system will not start another process (a process limit: EAGAIN), a large refresh
    keeps its books on a thread, as a small one does, and says so in a warning; nothing is lost."""
    import errno
    import logging

    from orchestrator.flows import recorder_process

    def refused(*args, **kwargs):
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(recorder_process.subprocess, "Popen", refused)
    graph = _graph("short")
    with api(prefect_server), caplog.at_level(logging.WARNING, logger="critpath"):
        report = run(graph, "threads", max_concurrency=2, bookkeeping="process")
    assert report["prefect_errors"] == [] and report["prefect_confirmed"] is True
    assert any("could not start the Prefect bookkeeping process (BlockingIOError" in r.getMessage() for r in caplog.records)
    rb = readback(prefect_server, report["flow_run_id"], graph.names)
    assert {n: tr.state.name for n, tr in rb.task_runs.items()} == {
        "extract": "Completed", "load": "Completed", "noisy": "Failed", "after_noisy": "Skipped"}
