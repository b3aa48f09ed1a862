"""Watching a deadline while the refresh runs: a dispatcher observer and its own thread.

``DeadlineWatcher`` re-projects the finish (``planning.deadline.project``) whenever a service
completes, fails or will be retried, and when a running service passes its p50 or its p90 (from
history). Past its p50 a service's projected time grows as it goes on, so the watcher then also
looks again as often as the slack left could be used up (``slack / GROWTH``, never more often than
``MIN_STEP_S``), and once more at the alert moment itself. Between those moments its thread
sleeps on a condition (a bounded wait, no polling); the dispatcher only records the event under
a lock and returns, and never waits for a projection, a notification or a hook.

The moment the projected finish passes the deadline (less its margin), ``notify("at-risk",
details)`` is called once, on the watcher's thread; once more (``"recovered"``) if the
projection comes back under it, unless a service has failed meanwhile (the data will not all be
there then, however early). ``details`` is plain JSON data, with a one-line ``message``.
``report`` gives the run report's ``deadline`` entry.

``run_hook`` runs the ``on_deadline_risk`` command with the details as JSON on its standard
input, bounded in time, and returns a line saying what went wrong instead of raising.
"""
from __future__ import annotations

import contextvars
import json
import math
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Mapping, Sequence

from ..planning.deadline import GROWTH, Deadline, Projection, Spread, clock, project, span, spreads
from ..planning.estimates import Observed
from .events import Event, ServiceRun

#: the shortest wait between two timed re-projections while a service overruns
MIN_STEP_S = 0.25
#: the longest the watcher's thread sleeps without looking again (a bound, not a poll)
MAX_WAIT_S = 60.0
#: re-projections may take at most this share of the watcher's time (a big graph's simulation
#: holds the interpreter lock, which a dispatcher on threads shares)
DUTY = 0.2
#: services of the remaining critical path given in the details (a Prefect event's payload has a size limit)
MAX_PATH = 1000
#: how long ``on_deadline_risk`` may run before it is stopped
HOOK_TIMEOUT_S = 30.0

Notify = Callable[[str, dict], None]


@dataclass(frozen=True)
class DeadlineWatch:
    """What a refresh needs to watch a deadline: when, history's spread per service, the hook."""
    deadline: Deadline
    spread: dict[str, Spread] = field(default_factory=dict)
    hook: str | None = None  # on_deadline_risk: a shell command
    run_id: str | None = None  # names the refresh in the event's resource id
    planned_at: float | None = None  # when the plan was made: its prediction counts from then


def watch_for(deadline: Deadline | None, names: Sequence[str], observed: Mapping[str, Sequence[Observed]],
              runner: str | None, hook: str | None = None, run_id: str | None = None) -> DeadlineWatch | None:
    """What watching ``deadline`` takes, the plan made just now; None without a deadline."""
    if deadline is None:
        return None
    return DeadlineWatch(deadline, spreads(names, observed, runner), hook or None, run_id, time.time())


def iso(t: float) -> str:
    """Unix seconds as a local ISO 8601 date-time with its offset."""
    return datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")


class DeadlineWatcher:
    def __init__(self, plan, deadline: Deadline, spread: Mapping[str, Spread] | None, notify: Notify,
                 clock: Callable[[], float] = time.time, planned_at: float | None = None):
        """``planned_at``: when the plan was made (default: when watching starts); the finish it
        predicts, ``predicted_finish_at_start``, counts from then, as the start of a run says it."""
        self.plan = plan
        self.deadline = deadline
        self.spread = dict(spread or {})
        self.notify = notify
        self.clock = clock
        self.planned_at = planned_at
        self.est = dict(zip(plan.graph.names, plan.est, strict=True))
        self.state = "ok"  # ok -> at-risk -> recovered
        self.started_at: float | None = None
        self.predicted_finish_at_start: float | None = None
        self.at_risk_at: float | None = None
        self.recovered_at: float | None = None
        self.last: Projection | None = None
        self.checks = 0
        self.errors: list[str] = []  # what notify raised, one line each
        self._completed: set[str] = set()
        self._gone: set[str] = set()
        self._failed = False
        self._running: dict[str, float] = {}  # name -> dispatched
        self._dirty = False
        self._stop = False
        self._ended = False  # the run was cancelled: nothing more to say
        self._cond = threading.Condition()
        self._checked_at = -math.inf
        self._not_before = -math.inf
        self._thread: threading.Thread | None = None

    # -- lifetime ---------------------------------------------------------------------------------
    def __enter__(self) -> "DeadlineWatcher":
        now = self.clock()
        self.started_at = now
        predicted = self.plan.predicted_makespan_s
        if predicted is None:
            predicted = self.plan.simulated_makespan_s
        base = now if self.planned_at is None else self.planned_at
        self.predicted_finish_at_start = base + predicted if predicted == predicted else None
        self._dirty = True  # the first look: a plan that already misses is flagged at once
        # in a copy of the caller's context: a notify that talks to Prefect reaches the same API
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._loop,),
                                        name="critpath-deadline", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop looking; waits for a notification in progress (a hook is bounded in time)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()

    # -- observer side (dispatcher thread): records and returns ----------------------------------
    def on_event(self, kind: Event, run: ServiceRun, t: float, **info: Any) -> None:
        name = run.name
        with self._cond:
            if kind == Event.DISPATCH:
                self._running[name] = t  # its p50 and p90 moments are new timers
            elif kind == Event.COMPLETE:
                self._running.pop(name, None)
                self._completed.add(name)
                self._dirty = True
            elif kind == Event.RETRY:
                self._running.pop(name, None)
                self._dirty = True
            elif kind in (Event.FAIL, Event.SKIP):
                self._running.pop(name, None)
                self._gone.add(name)
                self._failed = True
                self._dirty = True
            elif kind == Event.CANCEL:
                self._running.pop(name, None)
                self._ended = True
            else:
                return
            self._cond.notify_all()

    # -- watcher thread ---------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stop or self._ended or self.state == "recovered":
                        return
                    now = self.clock()
                    due = now if self._dirty else self._due(now)
                    if due is not None:
                        due = max(due, self._not_before)
                        if due <= now:
                            break
                    wait = MAX_WAIT_S if due is None else min(MAX_WAIT_S, due - now)
                    self._cond.wait(wait)
                completed, gone, running = set(self._completed), set(self._gone), dict(self._running)
                failed = self._failed
                self._dirty = False
            try:
                self.check(completed, gone, running, failed=failed)
            except Exception as exc:  # a bug here must not pass unseen, nor take the refresh down
                self.errors.append(f"deadline projection: {type(exc).__name__}: {exc}")
                return

    def _due(self, now: float) -> float | None:
        """The next moment a projection could change without an event: a running service passing
        its p50 or p90, the slack used up by an overrunning one, the alert moment itself."""
        if self.state != "ok":
            return None  # from at-risk only an event (an earlier completion) can bring it back
        alert = self.deadline.alert_at
        moments = [alert] if alert > self._checked_at else []
        for name, dispatched in self._running.items():
            p50, p90 = self._p50_p90(name)
            # a service of a few milliseconds passing its p50 changes nothing worth a look of its own
            moments += [m for m in (dispatched + max(p50, MIN_STEP_S), dispatched + max(p90, MIN_STEP_S))
                        if m > self._checked_at]
            if now - dispatched > p50 and self.last is not None:  # overrunning: its projection grows
                slack = alert - self.last.finish_at
                moments.append(self._checked_at + max(MIN_STEP_S, slack / GROWTH))
        return min(moments) if moments else None

    def _p50_p90(self, name: str) -> tuple[float, float]:
        s = self.spread.get(name)
        if s is None:
            e = self.est.get(name, 0.0)
            return e, e
        return s.p50, max(s.p50, s.p90)

    def check(self, completed=(), gone=(), running: Mapping[str, float] | None = None, now: float | None = None,
              failed: bool = False) -> Projection:
        """Project the finish now from this state, and notify if it crossed the alert moment."""
        now = self.clock() if now is None else now
        began = time.perf_counter()
        proj = project(self.plan, now, completed, gone, running or {}, self.spread)
        took = time.perf_counter() - began
        self._not_before = now + took * (1 / DUTY - 1)
        self._checked_at = now
        self.last = proj
        self.checks += 1
        alert = self.deadline.alert_at
        if self.state == "ok" and proj.finish_at > alert:
            self.state, self.at_risk_at = "at-risk", now
            self._notify("at-risk", proj, completed)
        elif self.state == "at-risk" and proj.finish_at <= alert and not failed:
            self.state, self.recovered_at = "recovered", now
            self._notify("recovered", proj, completed)
        return proj

    def _notify(self, kind: str, proj: Projection, completed) -> None:
        try:
            self.notify(kind, self.details(kind, proj, completed))
        except Exception as exc:  # a notification must never take the refresh down
            self.errors.append(f"deadline {kind}: {type(exc).__name__}: {exc}")

    # -- what is said -----------------------------------------------------------------------------
    def details(self, kind: str, proj: Projection, completed=()) -> dict:
        d = self.deadline
        late = proj.finish_at - d.at
        running = {}
        for name, (total, elapsed) in sorted(proj.running.items()):
            s = self.spread.get(name)
            running[name] = {"elapsed_s": elapsed, "expected_s": total, "left_s": max(0.0, total - elapsed),
                             "p50_s": s.p50 if s else None, "p90_s": s.p90 if s else None,
                             "estimate_s": self.est.get(name)}
        return {
            "event": f"critpath.deadline.{kind}",
            "kind": kind,
            "message": message(kind, d, proj, self.spread, self.est),
            "at": proj.now,
            "deadline": d.at,
            "deadline_iso": iso(d.at),
            "deadline_given": d.given,
            "margin_s": d.margin_s,
            "projected_finish": proj.finish_at,
            "projected_finish_iso": iso(proj.finish_at),
            "late_by_s": late,  # negative: that much before the deadline
            "predicted_finish_at_start": self.predicted_finish_at_start,
            # an event's payload has a size limit: a path of thousands of services is cut (its length is kept)
            "remaining_critical_path": list(proj.critical_path[:MAX_PATH]),
            "remaining_critical_path_length": len(proj.critical_path),
            "overrunning": proj.overrunning(self.spread, self.est),
            "running": running,
            "completed": len(completed),
            "services": len(self.plan.graph),
        }

    def report(self, finished_at: float | None, complete: bool) -> dict:
        """The run report's ``deadline`` entry. ``complete``: every service completed."""
        d = self.deadline
        finished_at = self.clock() if finished_at is None else finished_at
        return {"at": d.at, "given": d.given, "margin_s": d.margin_s,
                "predicted_finish_at_start": self.predicted_finish_at_start,
                "at_risk_at": self.at_risk_at, "recovered_at": self.recovered_at,
                "finished_at": finished_at, "met": bool(complete and finished_at <= d.at),
                **({"errors": list(self.errors)} if self.errors else {})}


def message(kind: str, d: Deadline, proj: Projection, spread: Mapping[str, Spread] | None = None,
            est: Mapping[str, float] | None = None) -> str:
    """One line for people: the deadline, the projected finish, by how much, what remains."""
    now = proj.now
    late = proj.finish_at - d.at
    if kind == "recovered":
        return (f"critpath: deadline back on track: projected finish {clock(proj.finish_at, None, now)}, "
                f"{span(-late)} before the deadline {clock(d.at, None, now)}")
    by = (f"{span(late)} late" if late > 0
          else f"only {span(-late)} before it, inside the {span(d.margin_s)} margin")
    names = proj.critical_path
    shown = names if len(names) <= 10 else [*names[:5], "...", *names[-4:]]
    path = (" -> ".join(shown) or "nothing") + (f" ({len(names)} services)" if len(names) > 10 else "")
    over = []
    for name in proj.overrunning(spread or {}, est or {}):
        total, elapsed = proj.running[name]
        s = (spread or {}).get(name)
        usual = f"p90 {s.p90:.2f} s" if s else f"estimate {(est or {}).get(name, 0.0):.2f} s"
        over.append(f"{name} has run {elapsed:.1f} s (history {usual})")
    return (f"critpath: deadline at risk: deadline {clock(d.at, None, now)}, projected finish "
            f"{clock(proj.finish_at, None, now)}, {by}; remaining critical path: {path}"
            + (f"; {'; '.join(over)}" if over else ""))


def run_hook(command: str, details: dict, timeout: float = HOOK_TIMEOUT_S, cwd: str | None = None) -> str | None:
    """Run ``command`` (a shell command line) with ``details`` as JSON on its standard input.
    None when it exited 0; else one line saying what went wrong. Never raises; never leaves it
    running: past ``timeout`` its whole process group is killed."""
    what = f"on_deadline_risk ({command!r})"
    try:
        proc = subprocess.Popen(command, shell=True, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        return f"{what} could not start: {exc}"
    try:
        _, err = proc.communicate(json.dumps(details).encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        return f"{what} did not finish within {timeout:g} s and was stopped"
    if proc.returncode != 0:
        last = next((ln for ln in reversed(err.decode(errors="replace").splitlines()) if ln.strip()), "")
        return f"{what} exited with status {proc.returncode}" + (f": {last.strip()[:300]}" if last else "")
    return None
