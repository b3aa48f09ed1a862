"""Observers for ``run(observers=[...])`` / ``Dispatcher(observers=[...])``.

They are called on the dispatcher's thread for every event and must not block.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable


class EventLog:
    """The dispatcher's events in order, as ``(t, kind, name)`` like ``Dispatcher.events``."""

    def __init__(self):
        self.events: list[tuple[float, str, str]] = []

    def on_event(self, kind, run, t, **info) -> None:
        self.events.append((t, kind, run.name))


class ReleaseWhenSettled:
    """Creates the file ``release`` once every service in ``names`` has completed, failed
    or been skipped: the signal for blocking bodies (``services.hang``) to return, so that
    a timed-out straggler is kept busy exactly as long as the test needs it."""

    def __init__(self, release: Path, names: Iterable[str]):
        self.release = Path(release)
        self.pending = set(names)

    def on_event(self, kind, run, t, **info) -> None:
        if kind in ("complete", "fail", "skip") and run.name in self.pending:
            self.pending.discard(run.name)
            if not self.pending:
                self.release.touch()
