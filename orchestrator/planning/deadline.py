"""Deadlines: when a refresh must be done by, and when it is projected to be done.

Saying when (``resolve``), from a given ``now`` and time zone, so tests use a fixed clock:
  * ``HH:MM`` (or ``HH:MM:SS``): that time of day in ``tz`` (default: this machine's local
    time), its next occurrence after ``now``;
  * an ISO 8601 date-time, with an offset (``2026-11-23T09:00+01:00``, ``...Z``) or without one
    (then in ``tz``);
  * ``+DURATION`` from ``now``: ``+90s``, ``+15m``, ``+2h``, or a sum such as ``+1h30m``.
Bad input (unparseable, already past, a zero or negative duration, a margin as long as the time
left) is one ``CritpathError`` line naming the problem and the fix.

Projecting the finish (``project``), whenever something changes during a run: the remaining
graph (what has neither completed nor failed or been skipped) is simulated from now with the
plan's policy, limits and machine model (``machine.predict``, with the services already
running holding their slots from the first instant). A running service's remaining time comes
from history (``remaining_total``): until it passes its p50 it is expected to take its estimate;
past its p50, at least its p90, and ``GROWTH`` times what it has taken so far once that is more,
so the projection moves later as the service goes on. The projection returns the finish and the
remaining critical path: the longest chain of what is left (a running service counting for its
time left), the services to look at.

Pure Python over the planner's own data: no clock is read here.
"""
from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, tzinfo
from typing import Collection, Mapping, Sequence

from .errors import CritpathError, show
from .estimates import MIN_SAME_RUNNER, RECENT, Observed
from .graph import Graph
from .machine import Demand, Machine, predict
from .planner import critical_path, priorities
from .ranges import MAX_SECONDS

#: past its p50, a running service is projected to take max(p90, GROWTH x its elapsed time)
GROWTH = 1.25

FORMS = ("give HH:MM (local time, its next occurrence), an ISO 8601 date-time such as 2026-11-23T09:00 "
         "or 2026-11-23T09:00+01:00, or +DURATION from now such as +90s, +15m, +2h")

_CLOCK = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_PART = r"\d+(?:\.\d+)?\s*[smh]"
_SPAN = re.compile(rf"(?:{_PART}\s*)+")


@dataclass(frozen=True)
class Deadline:
    at: float  # Unix seconds
    given: str  # as the user wrote it
    margin_s: float = 0.0  # alert this much earlier

    @property
    def alert_at(self) -> float:
        """The projected finish may not pass this moment without an alert."""
        return self.at - self.margin_s


def parse_span(text: str) -> float | None:
    """Seconds in ``90s``, ``15m``, ``2h``, ``1h30m`` (a leading ``+`` allowed); None if it is not one."""
    if not isinstance(text, str):
        return None
    body = text.strip().removeprefix("+").strip().lower()
    if not _SPAN.fullmatch(body):
        return None
    return sum(float(n) * _UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)\s*([smh])", body))


def margin_seconds(value) -> float | None:
    """``deadline_margin`` as seconds: a number, or a span such as "10m"; None when it is neither
    (or negative, or not finite)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        seconds = float(value) if not isinstance(value, int) or abs(value) < 10**15 else math.inf
    else:
        seconds = parse_span(value)
    return seconds if seconds is not None and math.isfinite(seconds) and 0 <= seconds <= MAX_SECONDS else None


def check_syntax(text, what: str = "--deadline") -> None:
    """Raises what ``resolve`` would for the form alone (not for being in the past)."""
    _parse(text, 0.0, None, what, check_past=False)


def resolve(text, now: float, tz: tzinfo | None = None, margin_s: float = 0.0, what: str = "--deadline",
            margin_what: str = "deadline_margin") -> Deadline:
    """The deadline ``text`` means at ``now`` (Unix seconds) in time zone ``tz`` (None: local time),
    alerting ``margin_s`` earlier."""
    at = _parse(text, now, tz, what, check_past=True)
    if margin_s >= at - now:
        longer = "longer than" if margin_s > at - now else "as long as"
        raise CritpathError(f"{margin_what} {span(margin_s)} is {longer} the {span(at - now)} left until the "
                            f"deadline ({clock(at, tz, now)}): the alert would be due before the run starts; "
                            f"give a smaller {margin_what}, or a later {what}")
    return Deadline(at, text.strip(), margin_s)


def _parse(text, now: float, tz: tzinfo | None, what: str, check_past: bool) -> float:
    if not isinstance(text, str) or not text.strip():
        raise CritpathError(f"{what} {show(text)}: no time given; {FORMS}")
    t = text.strip()
    if t.startswith("-") or t.startswith("+-") or t.startswith("+ -"):
        raise CritpathError(f"{what} {show(t)}: a negative duration is in the past; give a time from now, "
                            f"such as {show('+' + t.lstrip('+- '))[1:-1]}")
    if t.startswith("+"):
        seconds = parse_span(t)
        if seconds is None:
            raise CritpathError(f"{what} {show(t)}: not a duration; give a number and a unit (s, m or h), "
                                "such as +90s, +15m, +2h or +1h30m")
        if seconds <= 0:
            raise CritpathError(f"{what} {show(t)}: a duration of zero is now; give a time from now such as +15m")
        if seconds > MAX_SECONDS:
            raise CritpathError(f"{what} {show(t)}: more than {span(MAX_SECONDS)} away; give a nearer deadline")
        return now + seconds
    m = _CLOCK.fullmatch(t)
    if m:
        hour, minute, second = int(m[1]), int(m[2]), int(m[3] or 0)
        if hour > 23 or minute > 59 or second > 59:
            raise CritpathError(f"{what} {show(t)}: not a time of day; give HH:MM from 00:00 to 23:59")
        return next_occurrence(time(hour, minute, second), now, tz)
    try:
        parsed = datetime.fromisoformat(t)
        at = (_localize(parsed, tz) if parsed.tzinfo is None else parsed).timestamp()
    except (ValueError, OverflowError, OSError):  # OverflowError, OSError: a year the clock cannot hold
        hint = f" (did you mean +{t}?)" if parse_span(t) is not None else ""
        raise CritpathError(f"{what} {show(t)}: not a time critpath reads{hint}; {FORMS}") from None
    if check_past and at <= now:
        raise CritpathError(f"{what} {show(t)}: that was {span(now - at)} ago (now is {clock(now, tz, None)}); give a "
                            "time in the future, or HH:MM for the next time the clock shows it")
    return at


def _localize(naive: datetime, tz: tzinfo | None) -> datetime:
    """``naive`` as a wall-clock time in ``tz`` (None: this machine's local time)."""
    if tz is None:
        return naive.astimezone()  # a naive datetime's astimezone() reads it as local time
    return naive.replace(tzinfo=tz)


def next_occurrence(of: time, now: float, tz: tzinfo | None = None) -> float:
    """The first moment after ``now`` at which the clock in ``tz`` (None: local) shows ``of``.
    A time that occurs twice on the night clocks go back is its first occurrence; a time the clocks
    skip is read with the offset before the change (02:30 on a night they jump from 02:00 to 03:00
    is 03:30)."""
    today = datetime.fromtimestamp(now, tz).date() if tz is not None else datetime.fromtimestamp(now).date()
    for days in range(0, 3):
        day = today + timedelta(days=days)
        at = _localize(datetime.combine(day, of), tz).timestamp()
        if at > now:
            return at
    raise AssertionError("unreachable: a time of day recurs within two days")  # pragma: no cover


# -- words for people ------------------------------------------------------------------------------
def clock(t: float, tz: tzinfo | None = None, now: float | None = None) -> str:
    """``t`` as the clock in ``tz`` shows it: ``09:00:00``, with the date when it is not ``now``'s day."""
    local = datetime.fromtimestamp(t, tz) if tz is not None else datetime.fromtimestamp(t)
    if now is not None:
        today = (datetime.fromtimestamp(now, tz) if tz is not None else datetime.fromtimestamp(now)).date()
        if local.date() == today:
            return local.strftime("%H:%M:%S")
    return local.strftime("%Y-%m-%d %H:%M:%S")


def span(seconds: float) -> str:
    """A length of time for people: ``0.4 s``, ``42 s``, ``4 min 12 s``, ``2 h 05 min``, ``3 d 4 h``."""
    s = abs(seconds)
    if s < 10:
        return f"{s:.1f} s"
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        m, r = divmod(round(s), 60)
        return f"{m} min {r} s" if r else f"{m} min"
    if s < 86400:
        h, r = divmod(round(s / 60), 60)
        return f"{h} h {r:02d} min"
    d, r = divmod(round(s / 3600), 24)
    return f"{d} d {r} h"


# -- history: how long each service takes, and how much longer it may ------------------------------
@dataclass(frozen=True)
class Spread:
    p50: float
    p90: float


def quantile(values: Sequence[float], q: float) -> float:
    """The inclusive ``q`` quantile (as ``critpath history`` computes its p50 and p90)."""
    if len(values) == 1:
        return float(values[0])
    return float(statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1])


def spreads(names: Sequence[str], observed: Mapping[str, Sequence[Observed]], runner: str | None) -> dict[str, Spread]:
    """p50 and p90 of each service's time alone, over the attempts its estimate is taken from
    (the recent ones, of the same runner kind once there are enough of them)."""
    out = {}
    for name in names:
        good = [o for o in observed.get(name, ()) if o.duration_s is not None and math.isfinite(o.duration_s)]
        same = [o for o in good if o.runner == runner]
        pick = (same if len(same) >= MIN_SAME_RUNNER else good)[-RECENT:]
        if pick:
            durations = [o.duration_s for o in pick]
            out[name] = Spread(quantile(durations, 0.5), quantile(durations, 0.9))
    return out


def remaining_total(estimate_s: float, elapsed_s: float, spread: Spread | None) -> float:
    """How long, in all, a running service that has run ``elapsed_s`` is now expected to take.

    Before its p50 (its estimate where history has none): its estimate, or what it has taken so far
    if that is more. Past it: at least its p90, and ``GROWTH`` x its elapsed time once that is more,
    so a service that keeps going keeps moving the projection."""
    p50 = spread.p50 if spread is not None else estimate_s
    p90 = max(spread.p90, p50) if spread is not None else p50
    if elapsed_s <= p50:
        return max(estimate_s, elapsed_s)
    return max(p90, GROWTH * elapsed_s)


# -- the projection --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Projection:
    now: float
    finish_at: float  # Unix seconds
    critical_path: list[str]  # of what remains, in order; [] when nothing does
    #: per running service: how long it is now expected to take in all, and how long it has run
    running: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def remaining_s(self) -> float:
        return self.finish_at - self.now

    def overrunning(self, spread: Mapping[str, Spread], est: Mapping[str, float]) -> list[str]:
        """The running services past their p50 (their estimate without history)."""
        return sorted(n for n, (_, elapsed) in self.running.items()
                      if elapsed > (spread[n].p50 if n in spread else est.get(n, 0.0)))


def declared_demand(graph: Graph) -> list[Demand]:
    """The demand ``make_plan`` assumes without estimates: code and CPU kinds busy one core."""
    return [Demand(1.0 if s.call is not None or s.kind in ("cpu", "work") else 0.0) for s in graph]


def project(plan, now: float, completed: Collection[str] = (), gone: Collection[str] = (),
            running: Mapping[str, float] | None = None, spread: Mapping[str, Spread] | None = None) -> Projection:
    """When the run of ``plan`` (a ``planner.Plan``) is projected to finish, seen at ``now``.

    ``completed``: services done; ``gone``: failed for good, skipped or cancelled (they will not
    run); ``running``: service -> when its current attempt was dispatched (Unix seconds); every
    other service waits for its upstreams, a slot or a retry. ``spread``: history's p50 and p90 per
    service (``spreads``)."""
    running = dict(running or {})
    spread = spread or {}
    g = plan.graph
    keep = [n for n in g.names if n not in completed and n not in gone]
    if not keep:
        return Projection(now, now, [], {})
    sub = g.subgraph(keep)
    idx = [g.index[n] for n in sub.names]
    est = [plan.est[i] for i in idx]
    demand_all = plan.demand or declared_demand(g)
    demand = [demand_all[i] for i in idx]
    rank_all = plan.rank or plan.priority
    rank = [rank_all[i] for i in idx]
    machine = plan.machine or Machine(cores=0.0)
    expected: dict[str, tuple[float, float]] = {}
    started: dict[int, float] = {}
    for name, dispatched in running.items():
        j = sub.index.get(name)
        if j is None:
            continue
        elapsed = max(0.0, now - dispatched)
        total = remaining_total(est[j], elapsed, spread.get(name))
        expected[name] = (total, elapsed)
        started[j] = total - elapsed
    p = predict(sub, est, demand, rank, plan.max_concurrency, machine, plan.cpu_aware, started=started)
    # the remaining critical path: the longest chain of what is left, a running service counting
    # for the time it has left
    left = [started.get(j, e) for j, e in enumerate(est)]
    path = [sub.names[i] for i in critical_path(sub, priorities(sub, left, sub.topo_order()))]
    return Projection(now, now + p.makespan_s, path, expected)


@dataclass(frozen=True)
class Verdict:
    """The plan against a deadline, before anything runs."""
    deadline: Deadline
    finish_at: float
    path: list[tuple[str, float]]  # the predicted critical path: (service, estimate s)

    @property
    def slack_s(self) -> float:
        return self.deadline.at - self.finish_at

    @property
    def at_risk(self) -> bool:
        return self.finish_at > self.deadline.alert_at

    def look_at(self, top: int = 3) -> list[tuple[str, float]]:
        """The longest services of the predicted critical path, longest first."""
        return sorted(self.path, key=lambda p: (-p[1], p[0]))[:top]


def verdict(plan, deadline: Deadline, now: float) -> Verdict:
    """What the plan predicts against ``deadline``, starting at ``now``."""
    p = project(plan, now)
    est = dict(zip(plan.graph.names, plan.est, strict=True))
    return Verdict(deadline, p.finish_at, [(n, est[n]) for n in p.critical_path])


def says(v: Verdict, tz: tzinfo | None = None, now: float | None = None) -> str:
    """One line: the predicted finish and the slack, or by how much it misses and what to look at."""
    d = v.deadline
    head = (f"deadline {clock(d.at, tz, now)} ({d.given}"
            + (f", alert {span(d.margin_s)} before" if d.margin_s else "") + f"): predicted finish "
            f"{clock(v.finish_at, tz, now)}")
    if not v.at_risk:
        return f"{head}, slack {span(v.slack_s)}"
    look = ", ".join(f"{n} ({e:.2f} s)" for n, e in v.look_at())
    miss = (f"misses it by {span(-v.slack_s)}" if v.slack_s < 0
            else f"only {span(v.slack_s)} before it, inside the {span(d.margin_s)} margin")
    return f"{head}, {miss}; on the predicted critical path, look at: {look}"
