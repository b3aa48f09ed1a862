"""What the dispatcher tells its observers, and the records it keeps per service.

``Event`` names every kind of event (a ``str`` enum, so a recorded log compares and
serialises as the plain words). ``ServiceRun`` is a service's state in one run;
``Attempt`` one entry of its attempt history, as written to the report.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol


class Event(str, enum.Enum):
    READY = "ready"          # every upstream completed (or a retry's delay is over)
    DISPATCH = "dispatch"    # an attempt went to the runner
    COMPLETE = "complete"
    RETRY = "retry"          # an attempt failed and another one will follow
    FAIL = "fail"            # failed for good
    SKIP = "skip"            # an upstream failed for good
    CANCEL = "cancel"        # in flight when the run was cancelled
    WAIT = "wait"            # the dispatcher goes idle (its own log only, never observers)

    def __str__(self) -> str:
        return self.value


#: events after which an attempt no longer holds a slot
ENDS_ATTEMPT = frozenset({Event.COMPLETE, Event.RETRY, Event.FAIL, Event.CANCEL})
#: events after which a service will not change again in this run
SETTLES = frozenset({Event.COMPLETE, Event.FAIL, Event.SKIP})


class Logged(NamedTuple):
    """One line of ``Dispatcher.events``: when, what, which service ("" for WAIT)."""
    t: float
    kind: Event
    service: str


@dataclass(frozen=True)
class Attempt:
    attempt: int
    start: float | None  # worker-measured; the dispatcher's clock when the worker never reported
    end: float | None
    worker: str | None
    ok: bool
    error: str | None
    lost: bool  # its worker died under it


@dataclass
class ServiceRun:
    name: str
    state: str = "waiting"  # waiting | ready | running | retrying | completed | failed | skipped | cancelled
    attempts: int = 0
    start: float | None = None  # worker-measured, last attempt
    end: float | None = None
    worker: str | None = None
    error: str | None = None
    traceback: str | None = None
    dispatched: float | None = None  # dispatcher clock, last attempt
    finished: float | None = None
    skipped_because: str | None = None
    history: list[Attempt] = field(default_factory=list)

    @property
    def lost_worker(self) -> bool:
        return any(a.lost for a in self.history)


class Observer(Protocol):
    def on_event(self, kind: Event, run: ServiceRun, t: float, **info: Any) -> None: ...
