"""The pure parts of event-triggered serving: coalescing reasons, run names, what counts
as a landed file, the watch pairs and the serve settings in critpath.toml.

    extract -> transform -> publish
    extract -> check
"""
from __future__ import annotations

import pytest

from orchestrator.inputs.config import _build
from orchestrator.planning.coalescing import (
    EVENT,
    Selection,
    resource_id,
    run_name,
    service_of,
    split_events,
    union,
)
from orchestrator.planning.errors import CritpathError

SERVED = ["extract", "transform", "check", "publish"]


def test_resource_ids_round_trip_and_foreign_ids_are_dropped():
    assert EVENT == "critpath.service.updated"
    assert resource_id("stg.orders") == "critpath.service.stg.orders"
    assert service_of("critpath.service.stg.orders") == "stg.orders"
    assert service_of("prefect.flow-run.123") is None and service_of("critpath.service.") is None
    assert split_events("critpath.service.b, critpath.service.a,critpath.service.b,junk") == ["b", "a"]
    assert split_events(None) == [] and split_events("") == []


def test_the_union_of_events_keeps_the_graphs_order_and_reports_unknown_names():
    chosen = union([["publish"], ["transform", "nope"], ["publish"]], SERVED)
    assert chosen == Selection(("transform", "publish"), ("nope",))
    assert chosen.expression == "transform+,publish+"
    assert not chosen.empty


def test_a_scheduled_reason_makes_the_union_everything():
    assert union([["check"], None], SERVED) == Selection(None)
    assert union([None], SERVED).expression is None


def test_events_naming_nothing_served_select_nothing():
    chosen = union([["gone"]], SERVED)
    assert chosen.empty and chosen.unknown == ("gone",) and chosen.expression == ""


@pytest.mark.parametrize("selection, took_over, scheduled, name", [
    (Selection(("transform",)), 0, False, "transform+ updated"),
    (Selection(("transform", "check")), 1, False, "transform+, check+ updated (+1 coalesced)"),
    (Selection(tuple("abcdef")), 0, False, "a+, b+, c+, d+ and 2 more updated"),
    (Selection(None), 9, True, "scheduled refresh (+9 coalesced)"),
    (Selection(None), 0, False, "refresh of everything served"),
    (Selection(()), 2, False, "updated: nothing served (+2 coalesced)"),
])
def test_the_run_name_says_why_it_ran(selection, took_over, scheduled, name):
    assert run_name(selection, took_over, scheduled) == name


@pytest.mark.parametrize("path, landing", [
    ("orders.csv", True), ("2026/11/orders.parquet", True), ("orders.csv.tmp", False),
    ("orders.csv.part", False), ("orders.csv~", False), (".orders.csv.swp", False), (".hidden", False),
    ("~lock.orders.csv#", False), (".staging/orders.csv", False), ("orders.crdownload", False)])
def test_what_counts_as_a_landed_file(path, landing):
    from orchestrator.ui.watching import is_landing

    assert is_landing(path) is landing


def test_a_batch_of_changes_maps_to_the_services_of_their_folders(tmp_path):
    from watchfiles import Change

    from orchestrator.ui.watching import Watch, landed

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    watches = [Watch(tmp_path / "a", "orders", 2.0), Watch(tmp_path / "b", "payments", 2.0)]
    changes = {(Change.added, str(tmp_path / "a" / "x.csv")), (Change.modified, str(tmp_path / "a" / "x.csv.tmp")),
               (Change.deleted, str(tmp_path / "b" / "old.csv")), (Change.added, str(tmp_path / "elsewhere.csv")),
               (Change.modified, str(tmp_path / "b" / "y.csv"))}
    assert landed(changes, watches) == {"orders": ["x.csv"], "payments": ["y.csv"]}


def test_watch_pairs_and_serve_settings_in_the_config():
    cfg = _build("critpath.toml", {"serve_collision": "skip", "debounce": 0.5,
                                   "watch": [{"path": "landing/orders", "service": "orders"},
                                             {"path": "landing/pay", "service": "payments", "debounce": 5}]})
    assert cfg.serve_collision == "skip" and cfg.debounce == 0.5
    assert cfg.watch == ({"path": "landing/orders", "service": "orders"},
                         {"path": "landing/pay", "service": "payments", "debounce": 5.0})
    default = _build("critpath.toml", {})
    assert default.serve_collision == "queue" and default.debounce == 2.0 and default.watch == ()


def test_bad_serve_settings_are_reported_together():
    with pytest.raises(CritpathError) as err:
        _build("critpath.toml", {"serve_collision": "drop", "debounce": 0,
                                 "watch": [{"path": "x", "servce": "a"}, {"path": "", "service": "a"},
                                           {"path": "x", "service": "a", "debounce": -1}]})
    text = str(err.value)
    assert text.startswith("critpath.toml: 5 problems")
    for needle in ("serve_collision = 'drop'", "debounce = 0: must be a number of seconds > 0",
                   "watch #1: unknown key 'servce' (did you mean 'service'?)", "watch #2: path = ''",
                   "watch #3: debounce = -1"):
        assert needle in text, (needle, text)


def test_the_served_deployment_is_limited_to_one_run_and_triggered_by_the_event():
    from orchestrator.flows.triggers import deployment_options

    options = deployment_options("skip", 1.5)
    limit = options["concurrency_limit"]
    assert limit.limit == 1 and limit.collision_strategy.value == "CANCEL_NEW"
    assert deployment_options()["concurrency_limit"].collision_strategy.value == "ENQUEUE"
    (trigger,) = options["triggers"]
    assert trigger.expect == {EVENT} and trigger.posture == "Reactive" and trigger.threshold == 1
    assert trigger.match.model_dump() == {"prefect.resource.id": "critpath.service.*"}
    assert trigger.parameters == {"event": "{{ event.resource.id }}"}
    assert trigger.schedule_after.total_seconds() == 1.5


def test_critpath_server_tells_the_ui_its_own_port(tmp_path, monkeypatch):
    from orchestrator.flows.serving import server_command

    monkeypatch.delenv("PREFECT_UI_API_URL", raising=False)
    cmd, env = server_command(str(tmp_path), "127.0.0.1", 4321)
    assert cmd[-2:] == ["--port", "4321"] and env["PREFECT_UI_API_URL"] == "http://127.0.0.1:4321/api"
    assert server_command(str(tmp_path), "0.0.0.0", 80)[1]["PREFECT_UI_API_URL"] == "http://127.0.0.1:80/api"
    monkeypatch.setenv("PREFECT_UI_API_URL", "https://prefect.example/api")
    assert server_command(str(tmp_path), "127.0.0.1", 4321)[1]["PREFECT_UI_API_URL"] == "https://prefect.example/api"
