"""What one served refresh does when several reasons to run have piled up: pure rules.

A served refresh runs for a reason: its schedule fired, or a ``critpath.service.updated``
event named a service (resource id ``critpath.service.<name>``). Reasons that pile up
while a refresh runs, or within the debounce window, are *coalesced*: the first refresh
to start takes every waiting reason as its own and refreshes the union of their
selections; the waiting runs it took over end without running anything.

    reason                 selection
    schedule (or manual)   everything served
    event on <name>        <name>+  (that service and all its downstream)

The union of ``everything`` with anything is everything. A name the served graph does not
hold (a producer's typo, a service since removed) selects nothing and is reported.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

#: the event that asks for a refresh of a service and everything downstream of it
EVENT = "critpath.service.updated"
#: its resource id is this prefix followed by the service's name
RESOURCE_PREFIX = "critpath.service."


def resource_id(name: str) -> str:
    """``critpath.service.<name>``: the resource id of an event about service ``name``."""
    return RESOURCE_PREFIX + name


def service_of(resource: str) -> str | None:
    """The service a resource id names (``critpath.service.a.b`` names ``a.b``); None if it
    is not a critpath service's resource id."""
    resource = resource.strip()
    if not resource.startswith(RESOURCE_PREFIX) or len(resource) == len(RESOURCE_PREFIX):
        return None
    return resource[len(RESOURCE_PREFIX):]


def split_events(text: str | None) -> list[str]:
    """A run's ``event`` parameter (resource ids, comma-separated; the trigger gives one)
    as service names, in order, without repeats; malformed ids are dropped."""
    names = (service_of(part) for part in (text or "").split(","))
    return list(dict.fromkeys(n for n in names if n))


@dataclass(frozen=True)
class Selection:
    """What a refresh that took over ``reasons`` runs. ``services`` None means everything
    served; otherwise the updated services whose ``name+`` it refreshes (possibly none).
    ``unknown``: updated names the served graph does not hold."""

    services: tuple[str, ...] | None
    unknown: tuple[str, ...] = ()

    @property
    def expression(self) -> str | None:
        """A ``--select`` expression for it (``a+,b+``); None for everything served."""
        if self.services is None:
            return None
        return ",".join(f"{n}+" for n in self.services)

    @property
    def empty(self) -> bool:
        return self.services is not None and not self.services


def union(reasons: Iterable[list[str] | None], served: Iterable[str]) -> Selection:
    """The union of several reasons' selections. Each reason is None (a scheduled or manual
    run: everything served) or the service names its events updated. ``served``: the names
    the served graph holds, in its order; the result keeps that order."""
    served = list(served)
    known = set(served)
    updated: dict[str, None] = {}
    everything = False
    for reason in reasons:
        if reason is None:
            everything = True
        else:
            updated.update(dict.fromkeys(reason))
    unknown = tuple(n for n in updated if n not in known)
    if everything:
        return Selection(None, unknown)
    return Selection(tuple(n for n in served if n in updated), unknown)


def run_name(selection: Selection, took_over: int, scheduled: bool) -> str:
    """The flow run's name, saying why it ran: ``orders+, payments+ updated`` for events,
    ``scheduled refresh`` for the schedule; ``(+N coalesced)`` when it took over N waiting runs."""
    if selection.services is None:
        head = "scheduled refresh" if scheduled else "refresh of everything served"
    elif selection.services:
        shown = list(selection.services[:4])
        more = len(selection.services) - len(shown)
        head = ", ".join(f"{n}+" for n in shown) + (f" and {more} more" if more else "") + " updated"
    else:
        head = "updated: nothing served"
    return head + (f" (+{took_over} coalesced)" if took_over else "")
