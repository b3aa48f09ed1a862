"""Deadlines (issue 12), without a server: saying when (``planning.deadline.resolve``) on a fixed
clock, the projection's arithmetic on recorded histories, the watcher's once-only alerts and its
timer, the hook, the config keys, and the summary, report and timeline of a run with a deadline.

Every projected number is worked out by hand in the test's docstring.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time as _time
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from orchestrator.execution.deadline import DeadlineWatcher, message, run_hook
from orchestrator.execution.events import Event, ServiceRun
from orchestrator.inputs.config import load_config
from orchestrator.inputs.history import AttemptRow, History
from orchestrator.planning.deadline import (
    Deadline,
    Spread,
    margin_seconds,
    project,
    remaining_total,
    resolve,
    says,
    spreads,
    verdict,
)
from orchestrator.planning.errors import CritpathError
from orchestrator.planning.estimates import Observed, estimates
from orchestrator.planning.graph import Graph
from orchestrator.planning.machine import Machine
from orchestrator.planning.model import Service
from orchestrator.planning.planner import make_plan

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
#: the fixed clock: Sunday 22 November 2026, 08:30:00 in Paris (07:30 UTC)
NOW = datetime(2026, 11, 22, 8, 30, tzinfo=PARIS).timestamp()


def at(tz, *fields) -> float:
    return datetime(*fields, tzinfo=tz).timestamp()


# -- saying when -----------------------------------------------------------------------------------
@pytest.mark.parametrize("when, expected", [
    ("09:00", at(PARIS, 2026, 11, 22, 9, 0)),  # later today
    ("9:05", at(PARIS, 2026, 11, 22, 9, 5)),
    ("08:00", at(PARIS, 2026, 11, 23, 8, 0)),  # already past today: tomorrow
    ("08:30", at(PARIS, 2026, 11, 23, 8, 30)),  # exactly now: the next one, tomorrow
    ("08:30:01", at(PARIS, 2026, 11, 22, 8, 30, 1)),
    ("00:00", at(PARIS, 2026, 11, 23, 0, 0)),
    ("23:59", at(PARIS, 2026, 11, 22, 23, 59)),
])
def test_a_time_of_day_is_its_next_occurrence(when, expected):
    d = resolve(when, NOW, PARIS)
    assert d.at == expected and d.given == when and d.margin_s == 0 and d.alert_at == expected


def test_a_time_of_day_is_read_in_the_given_time_zone():
    """At 07:30 UTC it is 02:30 in New York: 09:00 there is 14:00 UTC, 6 h 30 min away."""
    assert resolve("09:00", NOW, NEW_YORK).at == at(timezone.utc, 2026, 11, 22, 14, 0)
    assert resolve("02:00", NOW, NEW_YORK).at == at(NEW_YORK, 2026, 11, 23, 2, 0)  # 02:30 there: tomorrow


def test_daylight_saving_changes():
    """Paris, 25 October 2026: 02:30 happens twice (03:00 CEST -> 02:00 CET); the first is meant.
    29 March 2026: 02:30 never happens (02:00 CET -> 03:00 CEST); it reads as 01:30 UTC (03:30 CEST)."""
    before_fall_back = at(PARIS, 2026, 10, 25, 0, 0)
    assert resolve("02:30", before_fall_back, PARIS).at == at(timezone.utc, 2026, 10, 25, 0, 30)
    before_spring = at(PARIS, 2026, 3, 29, 0, 0)
    assert resolve("02:30", before_spring, PARIS).at == at(timezone.utc, 2026, 3, 29, 1, 30)


def test_local_time_is_this_machines_without_a_time_zone(monkeypatch):
    """tz=None reads HH:MM and offset-less ISO times in the process's local time (TZ)."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    _time.tzset()
    try:
        # 07:30 UTC is 16:30 in Tokyo (+09:00, no daylight saving)
        assert resolve("17:00", NOW).at == at(timezone.utc, 2026, 11, 22, 8, 0)
        assert resolve("2026-11-22T18:00", NOW).at == at(timezone.utc, 2026, 11, 22, 9, 0)
    finally:
        monkeypatch.undo()
        _time.tzset()


@pytest.mark.parametrize("when, expected", [
    ("2026-11-22T10:00", at(PARIS, 2026, 11, 22, 10, 0)),  # no offset: in the time zone given
    ("2026-11-22 10:00:30", at(PARIS, 2026, 11, 22, 10, 0, 30)),
    ("2026-11-22T10:00Z", at(timezone.utc, 2026, 11, 22, 10, 0)),
    ("2026-11-22T15:00+05:30", at(timezone.utc, 2026, 11, 22, 9, 30)),
    ("2026-11-22T03:00-05:00", at(timezone.utc, 2026, 11, 22, 8, 0)),
    ("2026-11-23", at(PARIS, 2026, 11, 23, 0, 0)),  # a date alone is its midnight
])
def test_iso_8601_with_and_without_an_offset(when, expected):
    assert resolve(when, NOW, PARIS).at == expected


@pytest.mark.parametrize("when, seconds", [
    ("+90s", 90), ("+15m", 900), ("+2h", 7200), ("+1h30m", 5400), ("+1.5h", 5400), ("+ 45 s", 45),
    ("+2H", 7200),
])
def test_a_duration_counts_from_now(when, seconds):
    assert resolve(when, NOW, PARIS).at == NOW + seconds


def test_a_margin_alerts_earlier():
    d = resolve("09:00", NOW, PARIS, margin_s=600)
    assert (d.at, d.margin_s, d.alert_at) == (at(PARIS, 2026, 11, 22, 9, 0), 600, at(PARIS, 2026, 11, 22, 8, 50))


@pytest.mark.parametrize("when, needles", [
    ("", ["no time given", "HH:MM", "+15m"]),
    ("   ", ["no time given"]),
    ("tomorrow", ["not a time critpath reads", "HH:MM", "ISO 8601", "+90s"]),
    ("9am", ["not a time critpath reads"]),
    ("9h", ["did you mean +9h?"]),
    ("25:00", ["not a time of day", "00:00 to 23:59"]),
    ("12:60", ["not a time of day"]),
    ("2026-13-01T09:00", ["not a time critpath reads"]),
    ("+90", ["not a duration", "a unit (s, m or h)"]),
    ("+soon", ["not a duration"]),
    ("+0s", ["zero", "such as +15m"]),
    ("+0m", ["zero"]),
    ("+0.0h", ["zero"]),
    ("-5m", ["negative", "in the past", "+5m"]),
    ("+-5m", ["negative", "+5m"]),
    ("+99999999h", ["away", "nearer deadline"]),
    ("2026-11-22T08:00", ["that was 30 min ago", "now is 2026-11-22 08:30:00", "a time in the future"]),
    ("2026-11-22T07:30Z", ["that was", "a time in the future"]),  # exactly now is not in the future
    ("2020-01-01", ["ago", "HH:MM for the next time"]),
    (None, ["no time given"]),
    (9, ["no time given"]),
])
def test_bad_input_is_one_line_naming_the_problem_and_the_fix(when, needles):
    with pytest.raises(CritpathError) as err:
        resolve(when, NOW, PARIS)
    text = str(err.value)
    assert "\n" not in text and text.startswith("--deadline ")
    for needle in needles:
        assert needle in text, (needle, text)


def test_a_margin_as_long_as_the_time_left_is_refused():
    with pytest.raises(CritpathError, match=r"deadline_margin 1 h 00 min is longer than the 30 min left until "
                                            r"the deadline \(09:00:00\).*smaller deadline_margin"):
        resolve("09:00", NOW, PARIS, margin_s=3600)
    with pytest.raises(CritpathError, match="is as long as the 30 min left"):
        resolve("09:00", NOW, PARIS, margin_s=1800)
    assert resolve("09:00", NOW, PARIS, margin_s=1799).alert_at == NOW + 1


@pytest.mark.parametrize("value, seconds", [(0, 0.0), (90, 90.0), (2.5, 2.5), ("90s", 90.0), ("15m", 900.0),
                                            ("+2h", 7200.0), (-1, None), ("soon", None), (True, None),
                                            (float("nan"), None), (10**400, None), ("", None)])
def test_margin_values(value, seconds):
    assert margin_seconds(value) == seconds


# -- the config keys -------------------------------------------------------------------------------
def test_config_keys(tmp_path):
    (tmp_path / "critpath.toml").write_text('deadline = "09:00"\ndeadline_margin = "10m"\n'
                                            'on_deadline_risk = "notify-send late"\n')
    cfg = load_config(folder=tmp_path)
    assert (cfg.deadline, cfg.deadline_margin, cfg.on_deadline_risk) == ("09:00", 600.0, "notify-send late")
    assert load_config(folder=tmp_path / "nowhere").deadline is None


@pytest.mark.parametrize("text, needle", [
    ('deadline = "soon"', "deadline 'soon': not a time critpath reads"),
    ('deadline = "+0s"', "zero"),
    ("deadline = 9", "deadline = 9: must be a string"),
    ('deadline_margin = "a while"', "deadline_margin = 'a while': must be seconds"),
    ("deadline_margin = -5", "deadline_margin = -5"),
    ('on_deadline_risk = ""', "on_deadline_risk = '': must be a shell command"),
    ("on_deadline_risk = 3", "on_deadline_risk = 3"),
    ('deadlin = "09:00"', "did you mean 'deadline'"),
])
def test_bad_config_values_name_the_key(tmp_path, text, needle):
    (tmp_path / "critpath.toml").write_text(text + "\n")
    with pytest.raises(CritpathError) as err:
        load_config(folder=tmp_path)
    assert needle in str(err.value)


# -- history's spread and a running service's remaining time ---------------------------------------
def test_spreads_are_history_quantiles_of_the_attempts_estimates_use():
    """Ten attempts taking 1..10 s: p50 5.5 s, p90 1 + 0.9 x 9 = 9.1 s (inclusive quantiles, as
    `critpath history`). Three on threads outweigh the others once there are three."""
    observed = {"a": [Observed(float(k), "threads") for k in range(1, 11)],
                "b": [Observed(100.0, "processes"), *(Observed(2.0, "threads") for _ in range(3))],
                "c": [Observed(4.0, "dask")]}
    s = spreads(["a", "b", "c", "d"], observed, "threads")
    assert s["a"].p50 == pytest.approx(5.5) and s["a"].p90 == pytest.approx(9.1)
    assert s["b"] == Spread(2.0, 2.0)
    assert s["c"] == Spread(4.0, 4.0)  # one attempt, of another runner: still the best guess
    assert "d" not in s


@pytest.mark.parametrize("elapsed, total", [
    (0.0, 2.0), (1.5, 2.0), (2.0, 2.0),  # up to its p50: its estimate
    (2.5, 3.2),  # past p50: at least p90 (1.25 x 2.5 = 3.125 is less)
    (3.0, 3.75),  # 1.25 x 3.0 is more than p90
    (8.0, 10.0),  # and it keeps growing as the service goes on
])
def test_remaining_total(elapsed, total):
    assert remaining_total(2.0, elapsed, Spread(2.0, 3.2)) == pytest.approx(total)


def test_remaining_total_without_history_uses_the_estimate():
    assert remaining_total(4.0, 1.0, None) == 4.0
    assert remaining_total(4.0, 6.0, None) == pytest.approx(7.5)


# -- the projection, on a recorded history ---------------------------------------------------------
GRAPH = [Service("a", duration=1), Service("slow", after=("a",), duration=2), Service("c", after=("slow",), duration=3),
         Service("d", after=("c",), duration=1), Service("side", after=("a",), duration=0.5)]
RECORDED = {"a": [1.0] * 5, "slow": [2.0, 2.0, 2.0, 2.0, 4.0], "c": [3.0] * 5, "d": [1.0] * 5, "side": [0.5] * 5}


def recorded_plan(tmp_path, slots=2):
    """Five recorded runs (sleeps: no CPU, so no contention): a 1 s, slow 2, 2, 2, 2, 4 s (p50 2,
    p90 2 + 0.6 x 2 = 3.2), c 3 s, d 1 s, side 0.5 s. Plan: a -> slow -> c -> d, 7 s."""
    with History(tmp_path) as h:
        for r in range(5):
            for name, took in RECORDED.items():
                h.record(AttemptRow(service=name, run_id=f"r{r}", runner="threads", attempt=1, outcome="completed",
                                    start=1000.0 * r, end=1000.0 * r + took[r], cpu_s=0.0, gil_s=0.0))
        observed = h.observed()
    g = Graph(GRAPH)
    plan = make_plan(g, slots, estimates=estimates(g, observed, "threads"), machine=Machine(cores=2, gil_procs=(slots,)))
    return plan, spreads(g.names, observed, "threads")


def test_the_plan_from_history(tmp_path):
    plan, spread = recorded_plan(tmp_path)
    assert plan.predicted_makespan_s == pytest.approx(7.0)
    assert spread["slow"].p50 == pytest.approx(2.0) and spread["slow"].p90 == pytest.approx(3.2)
    assert project(plan, 100.0).finish_at == pytest.approx(107.0)
    assert project(plan, 100.0).critical_path == ["a", "slow", "c", "d"]


@pytest.mark.parametrize("elapsed, finish, left", [
    (1.5, 4.5, 0.5),  # before its p50: its estimate, 2 s; 0.5 left, then c 3 + d 1
    (2.5, 4.7, 0.7),  # past p50: its p90, 3.2 s; 0.7 left
    (4.0, 5.0, 1.0),  # 1.25 x 4 = 5 s; 1 left
    (8.0, 6.0, 2.0),  # 1.25 x 8 = 10 s; 2 left
])
def test_a_running_service_projects_from_its_history(tmp_path, elapsed, finish, left):
    """a and side done; slow dispatched ``elapsed`` s ago."""
    plan, spread = recorded_plan(tmp_path)
    now = 500.0
    p = project(plan, now, completed={"a", "side"}, running={"slow": now - elapsed}, spread=spread)
    assert p.finish_at - now == pytest.approx(finish)
    assert p.critical_path == ["slow", "c", "d"]
    total, ran = p.running["slow"]
    assert (total - ran, ran) == (pytest.approx(left), pytest.approx(elapsed))
    assert p.overrunning(spread, {}) == (["slow"] if elapsed > 2.0 else [])


def test_a_running_service_keeps_its_slot(tmp_path):
    """One slot: slow (1 s left) holds it; then c (priority 4 s) goes before side (0.5 s):
    c 1..4, d 4..5, side 5..5.5. The remaining critical path is still slow -> c -> d."""
    plan, spread = recorded_plan(tmp_path, slots=1)
    p = project(plan, 10.0, completed={"a"}, running={"slow": 9.0}, spread=spread)
    assert p.finish_at == pytest.approx(15.5)
    assert p.critical_path == ["slow", "c", "d"]


def test_failed_and_skipped_services_are_not_waited_for(tmp_path):
    """slow failed: c and d were skipped; only side remains, 0.5 s."""
    plan, spread = recorded_plan(tmp_path)
    p = project(plan, 10.0, completed={"a"}, gone={"slow", "c", "d"}, spread=spread)
    assert p.finish_at == pytest.approx(10.5) and p.critical_path == ["side"]
    done = project(plan, 10.0, completed=set(plan.graph.names))
    assert (done.finish_at, done.critical_path) == (10.0, [])


def test_contention_stretches_the_projection():
    """Two CPU-bound services of 4 s on 1 core, one running 2 s already (2 s left, its estimate):
    both run at half speed until the running one ends at 4 s; the other, 2 of 4 s done, ends at 6 s."""
    g = Graph([Service("x", duration=4, kind="cpu"), Service("y", duration=4, kind="cpu")])
    plan = make_plan(g, 2, estimates=estimates(g), machine=Machine(cores=1))
    p = project(plan, 0.0, running={"x": -2.0})
    assert p.finish_at == pytest.approx(6.0)


def test_before_the_run_the_verdict_says_finish_and_slack(tmp_path):
    plan, _ = recorded_plan(tmp_path)
    fits = verdict(plan, Deadline(NOW + 10, "+10s"), NOW)
    assert (fits.finish_at, fits.slack_s, fits.at_risk) == (NOW + 7, pytest.approx(3.0), False)
    assert says(fits, PARIS, NOW) == "deadline 08:30:10 (+10s): predicted finish 08:30:07, slack 3.0 s"
    late = verdict(plan, Deadline(NOW + 5, "+5s"), NOW)
    assert late.at_risk and late.slack_s == pytest.approx(-2.0)
    assert [n for n, _ in late.look_at()] == ["c", "slow", "a"]
    assert says(late, PARIS, NOW) == ("deadline 08:30:05 (+5s): predicted finish 08:30:07, misses it by 2.0 s; "
                                      "on the predicted critical path, look at: c (3.00 s), slow (2.00 s), "
                                      "a (1.00 s)")
    margin = verdict(plan, Deadline(NOW + 8, "+8s", margin_s=2), NOW)
    assert margin.at_risk and "only 1.0 s before it, inside the 2.0 s margin" in says(margin, PARIS, NOW)


# -- the watcher -----------------------------------------------------------------------------------
class Calls:
    def __init__(self):
        self.calls: list[tuple[str, dict]] = []
        self.event = threading.Event()

    def __call__(self, kind, details):
        self.calls.append((kind, details))
        self.event.set()


def test_the_watcher_alerts_once_and_recovers_once(tmp_path):
    """Deadline 100 + 6 s. At 101 (a done, slow 0 s in): 101 + 2 + 4 = 107 > 106: at risk. Still at
    risk at 102: no second call. slow done at 102.5: 102.5 + 4 = 106.5, still over; with c done
    early at 103: 103 + 1 = 104: back on track, once. Later crossings say nothing more."""
    plan, spread = recorded_plan(tmp_path)
    calls = Calls()
    w = DeadlineWatcher(plan, Deadline(106.0, "+6s"), spread, calls, clock=lambda: 100.0, planned_at=100.0)
    w.check({"a", "side"}, (), {"slow": 101.0}, now=101.0)
    assert [k for k, _ in calls.calls] == ["at-risk"] and w.at_risk_at == 101.0
    w.check({"a", "side"}, (), {"slow": 101.0}, now=102.0)
    w.check({"a", "side", "slow"}, (), {}, now=102.5)
    assert [k for k, _ in calls.calls] == ["at-risk"]
    w.check({"a", "side", "slow", "c"}, (), {}, now=103.0)
    assert [k for k, _ in calls.calls] == ["at-risk", "recovered"] and w.recovered_at == 103.0
    w.check({"a", "side", "slow", "c"}, (), {"d": 103.0}, now=200.0)
    assert len(calls.calls) == 2
    kind, d = calls.calls[0]
    assert d["event"] == "critpath.deadline.at-risk" and d["deadline"] == 106.0
    assert d["projected_finish"] == pytest.approx(107.0) and d["late_by_s"] == pytest.approx(1.0)
    assert d["remaining_critical_path"] == ["slow", "c", "d"]
    assert d["running"]["slow"]["left_s"] == pytest.approx(2.0) and d["running"]["slow"]["p90_s"] == pytest.approx(3.2)
    json.dumps(calls.calls)  # plain JSON, for the event's payload and the hook
    assert calls.calls[1][1]["event"] == "critpath.deadline.recovered"
    w.predicted_finish_at_start = 107.0
    assert w.report(104.5, complete=True) == {
        "at": 106.0, "given": "+6s", "margin_s": 0.0, "predicted_finish_at_start": 107.0, "at_risk_at": 101.0,
        "recovered_at": 103.0, "finished_at": 104.5, "met": True}
    assert w.report(107.0, complete=True)["met"] is False
    assert w.report(104.0, complete=False)["met"] is False


def test_a_failure_never_reads_as_recovered(tmp_path):
    """slow failed (c, d skipped): only side is left, well within the deadline, yet the data will
    not all be there: no 'recovered'."""
    plan, spread = recorded_plan(tmp_path)
    calls = Calls()
    w = DeadlineWatcher(plan, Deadline(103.0, "+3s"), spread, calls)
    w.check({"a"}, (), {"slow": 101.0}, now=101.0)
    w.check({"a"}, {"slow", "c", "d"}, {}, now=101.5, failed=True)
    assert [k for k, _ in calls.calls] == ["at-risk"]


def test_a_margin_alerts_before_the_projection_passes_the_deadline(tmp_path):
    plan, spread = recorded_plan(tmp_path)
    calls = Calls()
    w = DeadlineWatcher(plan, Deadline(108.0, "+8s", margin_s=2.0), spread, calls)
    w.check(now=100.0)  # 107 <= 108, but past 106
    kind, d = calls.calls[0]
    assert kind == "at-risk" and d["late_by_s"] == pytest.approx(-1.0)
    assert "only 1.0 s before it, inside the 2.0 s margin" in d["message"]


def test_the_message_names_deadline_finish_lateness_path_and_the_overrunning_service(tmp_path):
    plan, spread = recorded_plan(tmp_path)
    now = datetime(2026, 11, 22, 8, 30).timestamp()  # local time, as the console shows it
    p = project(plan, now, {"a", "side"}, (), {"slow": now - 4.0}, spread)
    text = message("at-risk", Deadline(now + 3, "+3s"), p, spread, {})
    assert text == ("critpath: deadline at risk: deadline 08:30:03, projected finish 08:30:05, 2.0 s late; "
                    "remaining critical path: slow -> c -> d; slow has run 4.0 s (history p90 3.20 s)")
    back = message("recovered", Deadline(now + 10, "+10s"), p, spread, {})
    assert back == "critpath: deadline back on track: projected finish 08:30:05, 5.0 s before the deadline 08:30:10"


def _run(name: str) -> ServiceRun:
    return ServiceRun(name)


def test_a_service_running_past_its_history_is_flagged_without_any_event(tmp_path):
    """Real time, its own thread: 'first' (history p50 0.2 s, p90 0.3 s) is dispatched and never
    reports; 'then' (0.2 s) follows it. Deadline 3 s away: the projection is 0.4 s. Only the timer
    can see 'first' run past its history (1.25 x elapsed + 0.2 passes 3 s at about 2.2 s), and it
    must do so before the deadline itself (where a check is due anyway)."""
    g = Graph([Service("first", duration=0.2), Service("then", after=("first",), duration=0.2)])
    plan = make_plan(g, 2, estimates=estimates(g), machine=Machine(cores=2))
    calls = Calls()
    start = _time.time()
    deadline = Deadline(start + 3.0, "+3s")
    with DeadlineWatcher(plan, deadline, {"first": Spread(0.2, 0.3)}, calls) as w:
        w.on_event(Event.READY, _run("first"), start)
        w.on_event(Event.DISPATCH, _run("first"), start)
        assert calls.event.wait(30), "never flagged"
    (kind, details), = calls.calls
    assert kind == "at-risk" and details["overrunning"] == ["first"]
    assert w.at_risk_at < deadline.alert_at
    assert details["remaining_critical_path"] == ["first", "then"]
    assert 2 <= w.checks < 60  # a few timed looks, no busy loop


def test_the_watcher_flags_a_plan_that_already_misses_at_once_and_never_blocks_the_dispatcher(tmp_path):
    """The first look happens when watching starts. notify blocks (as a slow hook would): events
    still return at once."""
    plan, spread = recorded_plan(tmp_path)
    release = threading.Event()
    entered = threading.Event()

    def slow_notify(kind, details):
        entered.set()
        release.wait(30)

    w = DeadlineWatcher(plan, Deadline(_time.time() + 1, "+1s"), spread, slow_notify)
    with w:
        assert entered.wait(30)
        began = _time.monotonic()
        for _ in range(200):
            w.on_event(Event.DISPATCH, _run("a"), _time.time())
            w.on_event(Event.COMPLETE, _run("a"), _time.time())
        returned = _time.monotonic() - began
        release.set()
    assert returned < 5  # generous: only against a dispatcher held by the watcher
    assert w.state == "at-risk"


# -- the hook --------------------------------------------------------------------------------------
def test_the_hook_gets_the_details_on_stdin(tmp_path):
    out = tmp_path / "got.json"
    cmd = f'{sys.executable} -c "import sys; open(sys.argv[1], \'w\').write(sys.stdin.read())" {out}'
    assert run_hook(cmd, {"kind": "at-risk", "late_by_s": 4.5}) is None
    assert json.loads(out.read_text()) == {"kind": "at-risk", "late_by_s": 4.5}


def test_a_failing_hook_is_reported_not_raised(tmp_path):
    problem = run_hook(f'{sys.executable} -c "import sys; print(\'no route to pager\', file=sys.stderr); '
                       f'sys.exit(3)"', {})
    assert problem is not None and "exited with status 3: no route to pager" in problem
    assert "exited with status 127" in run_hook("no-such-command-anywhere-xyz", {})


def test_a_hung_hook_is_stopped(tmp_path):
    pidfile = tmp_path / "pid"
    problem = run_hook(f"echo $$ > {pidfile}; exec sleep 60", {}, timeout=1.0)
    assert problem is not None and "did not finish within 1 s and was stopped" in problem
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# -- after the run: summary, report, timeline -----------------------------------------------------
def _report(deadline: dict | None) -> dict:
    base = datetime(2026, 11, 22, 8, 0).timestamp()
    services = {"a": {"state": "completed", "start": base, "end": base + 10, "attempts": 1, "worker": "w:1/t0",
                      "attempt_history": [{"attempt": 1, "start": base, "end": base + 10, "worker": "w:1/t0",
                                           "ok": True, "error": None, "lost": False}]}}
    report = {"makespan_s": 10.0, "critical_path": ["a"], "critical_path_s": 10.0, "lower_bound_s": 10.0,
              "simulated_makespan_s": 10.0, "runner": "threads", "max_concurrency": 2, "services": services,
              "failed": [], "skipped": [], "cancelled": [], "not_run": [], "efficiency": 1.0, "started_at": base}
    if deadline is not None:
        report["deadline"] = {k: (base + v if isinstance(v, (int, float)) and not isinstance(v, bool)
                                  and k != "margin_s" else v) for k, v in deadline.items()}
    return report


def test_the_summary_says_whether_it_was_met_and_when_it_was_flagged():
    from orchestrator.ui.summary import summary

    met = summary(_report({"at": 60, "predicted_finish_at_start": 9, "at_risk_at": None, "finished_at": 10,
                           "met": True}))
    assert ("deadline 08:01:00 met: finished 08:00:10, 50 s before it; never flagged at risk; predicted finish "
            "at the start 08:00:09") in met
    missed = summary(_report({"at": 8, "predicted_finish_at_start": 6, "at_risk_at": 4, "finished_at": 10,
                              "met": False}))
    assert ("DEADLINE MISSED: 08:00:08, finished 08:00:10, 2.0 s late; flagged at risk at 08:00:04, 4.0 s before "
            "it") in missed
    assert "deadline" not in summary(_report(None)).lower()


def test_the_report_refuses_a_deadline_it_cannot_read():
    from orchestrator.execution.report import report_problems

    ok = _report({"at": 60, "predicted_finish_at_start": 9, "at_risk_at": None, "finished_at": 10, "met": True})
    assert report_problems(ok) == []
    for bad, needle in (("soon", "deadline must be an object"), ({"at": 1e300, "met": True}, "deadline.at"),
                        ({"at": 5, "met": "yes"}, "deadline.met"), ({"at": 5, "at_risk_at": "x", "met": False},
                                                                     "deadline.at_risk_at")):
        report = {**ok, "deadline": bad}
        assert any(needle in p for p in report_problems(report)), (bad, report_problems(report))


def test_the_timeline_draws_the_deadline_and_the_finish_projected_at_the_start():
    import re
    import xml.etree.ElementTree as ET

    from orchestrator.ui.timeline import render_html

    page = render_html(_report({"at": 12, "predicted_finish_at_start": 9, "at_risk_at": 4, "finished_at": 10,
                                "met": True}))
    svg = ET.fromstring(re.search(r"<svg\b.*?</svg>", page, re.S).group(0))
    ns = "{http://www.w3.org/2000/svg}"
    marks = {g.get("class"): g for g in svg.iter(f"{ns}g")}
    assert set(marks) == {"mark deadline", "mark predicted"}
    x = {k: float(g.find(f"{ns}line").get("x1")) for k, g in marks.items()}
    assert x["mark predicted"] < x["mark deadline"]  # 9 s and 12 s after the first start
    assert "deadline 08:00:12" in "".join(marks["mark deadline"].itertext())
    assert ">08:00:12 met<" in page and ">08:00:04<" in page  # the cards
    far = render_html(_report({"at": 3600, "predicted_finish_at_start": 9, "at_risk_at": None, "finished_at": 10,
                               "met": True}))
    svg = ET.fromstring(re.search(r"<svg\b.*?</svg>", far, re.S).group(0))
    off = [g for g in svg.iter(f"{ns}g") if g.get("class") == "mark deadline off"]
    assert off and off[0].find(f"{ns}line") is None and "(off the chart)" in "".join(off[0].itertext())
    assert "mark" not in render_html(_report(None)).split("<style>")[-1].split("</style>")[-1]
