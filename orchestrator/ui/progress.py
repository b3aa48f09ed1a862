"""What the user sees while a refresh runs.

On a terminal: a live line (done / running / failed / waiting, elapsed against
the planned critical path) drawn by ``rich``. Elsewhere (CI, a pipe): plain log
lines, one per finished service, so a log file reads top to bottom.

An observer of the dispatcher: ``on_event`` runs on the dispatcher's thread and
only updates counters or prints.
"""
from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.live import Live
from rich.text import Text

from ..execution.events import ENDS_ATTEMPT, Event

#: the events that print a line when there is no live display
_PRINTED = frozenset({Event.COMPLETE, Event.FAIL, Event.RETRY, Event.SKIP})


class Progress:
    def __init__(self, total: int, critical_path_s: float, console: Console | None = None,
                 live: bool | None = None):
        self.console = console or Console(stderr=True)
        self.live_mode = self.console.is_terminal if live is None else live
        self.total = total
        self.cp = critical_path_s
        self.counts = {"completed": 0, "running": 0, "failed": 0, "skipped": 0}
        self.t0: float | None = None
        self._live: Live | None = None

    def __enter__(self):
        if self.live_mode:
            self._live = Live(self._render(), console=self.console, refresh_per_second=8, transient=False,
                              get_renderable=self._render)
            self._live.__enter__()
        return self

    def __exit__(self, *exc):
        if self._live:
            self._live.__exit__(*exc)

    def _elapsed(self) -> float:
        return 0.0 if self.t0 is None else time.time() - self.t0

    def _render(self) -> Text:
        c = self.counts
        waiting = self.total - c["completed"] - c["running"] - c["failed"] - c["skipped"]
        text = Text()
        text.append(f"{c['completed']} done", style="green")
        text.append(f"  {c['running']} running", style="cyan")
        text.append(f"  {c['failed']} failed", style="red" if c["failed"] else "")
        text.append(f"  {c['skipped']} skipped  {waiting} waiting")
        text.append(f"   {self._elapsed():6.1f} s elapsed / critical path {self.cp:.1f} s")
        return text

    def on_event(self, kind: Event, run, t: float, **info) -> None:
        if kind == Event.DISPATCH:
            self.t0 = self.t0 or t
            self.counts["running"] += 1
        elif kind in ENDS_ATTEMPT:
            self.counts["running"] -= 1
            if kind == Event.COMPLETE:
                self.counts["completed"] += 1
            elif kind == Event.FAIL:
                self.counts["failed"] += 1
        elif kind == Event.SKIP:
            self.counts["skipped"] += 1
        if self.live_mode or kind not in _PRINTED:
            return
        took = f"{run.end - run.start:.2f} s" if run.start and run.end else ""
        detail = {Event.COMPLETE: f"done     {run.name} {took}",
                  Event.FAIL: f"FAILED   {run.name}: {run.error}",
                  Event.RETRY: f"retrying {run.name} after attempt {run.attempts}: {run.error}",
                  Event.SKIP: f"skipped  {run.name} (upstream {info.get('upstream')!r} failed)"}[kind]
        done = self.counts["completed"] + self.counts["failed"] + self.counts["skipped"]
        print(f"[{self._elapsed():7.2f}s {done}/{self.total}] {detail}", file=sys.stderr, flush=True)
