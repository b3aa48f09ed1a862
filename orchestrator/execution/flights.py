"""The dispatcher's records of the attempts it has handed to the runner."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class InFlight:
    """An attempt the runner is running: its handle, and how often it was sent again."""

    attempt: int
    handle: Any  # the runner's; None when the submit itself failed
    resends: int = 0
    token: int = 0  # names this sending in the runner's reports (``_handle``): an attempt may be sent twice
    ahead: bool = False  # it was queued behind another (lookahead): dispatched when that one ended


@dataclass
class Queued:
    """An attempt sent ahead to run in the slot of ``behind`` (running, or queued there itself) the
    moment that one ends (lookahead)."""

    behind: int
    attempt: int
    handle: Any
    token: int
