"""The books of a long-lived slot, as the Dask and Ray runners both keep them.

A slot (one actor) runs one job at a time, and may have more sent behind the one it runs, in
line (the dispatcher's lookahead, ``submit_behind``; at most ``MAX_QUEUED``). Per slot the
runner keeps ``calls``, the calls sent there and not ended, in order, and ``gone``, once the
slot is never to be used again; a call knows its ``slot`` (None: sent as a plain task) and
whether it has ``finished``. Both functions here are called under the runner's own lock.
"""
from __future__ import annotations

#: the most jobs waiting in line on one slot behind the one it runs
MAX_QUEUED = 16


def free_behind(behind) -> bool:
    """A job may be sent behind call ``behind`` now: it has not ended, its slot is in use, it is
    the last in line there, and the line has room."""
    slot = behind.slot
    return (slot is not None and not behind.finished and not slot.gone and bool(slot.calls)
            and slot.calls[-1] is behind and len(slot.calls) <= MAX_QUEUED)


def off_slot(call, idle: list) -> None:
    """``call`` no longer runs on its slot (it ended, or was taken back); the slot is idle again
    when nothing else was sent there. A job queued behind it runs there now: the slot stays busy."""
    slot = call.slot
    if call in slot.calls:
        slot.calls.remove(call)
    if not slot.calls and not slot.gone and slot not in idle:
        idle.append(slot)
