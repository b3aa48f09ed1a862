"""Event-triggered and coalesced refreshes of the served deployment, on Prefect's own parts.

The served deployment (``critpath serve``) carries, besides its optional schedule:

- **A deployment trigger** (an open-source automation): every event named
  ``critpath.service.updated`` whose resource id matches ``critpath.service.*`` runs the
  deployment with the parameter ``event`` = ``{{ event.resource.id }}`` (Prefect renders
  the template from the event), scheduled ``debounce`` seconds after the event
  (the action's ``schedule_after``): events of one burst all wait for its end.
- **A concurrency limit of 1** with a collision strategy (``queue``: ENQUEUE, a run that
  finds the slot taken waits as ``AwaitingConcurrencySlot``; ``skip``: CANCEL_NEW, it is
  cancelled), so two refreshes never write the same tables at once.

Each run, as it starts (``take_over``), takes over every run of the deployment still
waiting: those of events (whenever they are due) and scheduled ones already due. It ends
them ``Completed`` in a state named ``Coalesced`` that names it, and refreshes the union of
their selections with its own (``planning.coalescing``). So however many events arrived in
the debounce window or while a refresh ran, they become one follow-up refresh, and nothing
is lost: an event's run either refreshes it or is taken over by a run that does.
With ``skip`` a run that collided is cancelled by the server instead; the refresh running
then starts one follow-up for the events of those cancelled runs as it ends (``follow_up``).
A run refused the slot waits for the server's retry (``PREFECT_SERVER_DEPLOYMENTS_
CONCURRENCY_SLOT_WAIT_SECONDS``, Prefect's default 30 s); as a refresh ends it makes those
runs due a second later (``wake_waiting``), so a follow-up does not sit idle meanwhile.

Stopping ``serve`` stands the deployment down (``stand_down``): its schedule is paused,
its trigger's automations are disabled and the runs waiting for it are deleted, so
nothing fires at a server nobody serves; serving again re-applies all three. A run whose
process ended without a final state (``end_orphans``) is ended ``Cancelled`` then, so that
it does not hold the deployment's slot.
"""
from __future__ import annotations

import datetime
import logging
from typing import Iterable
from uuid import UUID

from ..planning.coalescing import EVENT, RESOURCE_PREFIX, resource_id, split_events

#: the collision strategies ``serve_collision`` may name, as Prefect calls them
COLLISIONS = {"queue": "ENQUEUE", "skip": "CANCEL_NEW"}
#: the message Prefect's server gives a run it cancelled on collision (CANCEL_NEW)
COLLIDED = "Deployment concurrency limit reached."
_PAGE = 200


def deployment_options(collision: str = "queue", debounce: float = 2.0) -> dict:
    """``Runner.add_flow`` keywords: the concurrency limit of 1 with its collision strategy,
    and the trigger on ``critpath.service.updated``."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.events import DeploymentEventTrigger

    trigger = DeploymentEventTrigger(
        name="critpath: refresh on critpath.service.updated",
        description="Refreshes <name>+ when an event critpath.service.updated names critpath.service.<name>",
        expect={EVENT}, match={"prefect.resource.id": f"{RESOURCE_PREFIX}*"},
        posture="Reactive", threshold=1, within=datetime.timedelta(0),
        schedule_after=datetime.timedelta(seconds=debounce),
        parameters={"event": "{{ event.resource.id }}"})
    limit = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy(COLLISIONS[collision]))
    return {"concurrency_limit": limit, "triggers": [trigger]}


def _runs_query(deployment_id: UUID, states=("SCHEDULED",)) -> dict:
    """``read_flow_runs`` keywords for the deployment's runs in ``states``, first due first."""
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    return {"deployment_filter": DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            "flow_run_filter": FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=list(states)))),
            "sort": FlowRunSort.EXPECTED_START_TIME_ASC, "limit": _PAGE}


def _waiting_runs(client, deployment_id: UUID, states=("SCHEDULED",)) -> list:
    runs, offset = [], 0
    while True:
        page = client.read_flow_runs(**_runs_query(deployment_id, states), offset=offset)
        runs += page
        if len(page) < _PAGE:
            return runs
        offset += _PAGE


def take_over(this_run, now: datetime.datetime) -> list[list[str] | None]:
    """Ends every run of ``this_run``'s deployment that waits for it (an event's run, due or
    not; a scheduled run already due) as ``Coalesced`` into ``this_run``, and returns their
    reasons (``planning.coalescing.union``'s): the services their events named, or None
    for a scheduled run. Called while ``this_run`` holds the deployment's only slot, so no
    waiting run can start meanwhile; a run that ended first is simply not taken."""
    from prefect.client.orchestration import get_client
    from prefect.states import Completed

    reasons: list[list[str] | None] = []
    with get_client(sync_client=True) as client:
        for run in _waiting_runs(client, this_run.deployment_id):
            if run.id == this_run.id:
                continue
            event = (run.parameters or {}).get("event")
            due = run.expected_start_time is None or run.expected_start_time <= now
            if not event and not due:  # a later occurrence of the schedule: not waiting yet
                continue
            state = Completed(name="Coalesced", message=f"coalesced into flow run {this_run.name!r} ({this_run.id})")
            result = client.set_flow_run_state(run.id, state, force=True)
            if getattr(result, "status", None) is not None and result.status.value == "ACCEPT":
                reasons.append(split_events(event) if event else None)
    return reasons


def follow_up(this_run, started: datetime.datetime) -> int:
    """With ``skip``: the events whose runs the server cancelled on collision since
    ``this_run`` started (not already followed up) go into one new run of the deployment,
    the union of their services as its ``event``; returns how many were taken. Their runs'
    state messages then say so, so that a later refresh does not follow them up again."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    with get_client(sync_client=True) as client:
        cancelled = [r for r in _waiting_runs(client, this_run.deployment_id, ("CANCELLED",))
                     if r.state is not None and r.state.message == COLLIDED
                     and (r.parameters or {}).get("event") and r.created is not None and r.created >= started]
        names = list(dict.fromkeys(n for r in cancelled for n in split_events(r.parameters["event"])))
        if not names:
            return 0
        parameters = {**(this_run.parameters or {}), "event": ",".join(resource_id(n) for n in names)}
        new = client.create_flow_run_from_deployment(this_run.deployment_id, parameters=parameters)
        for r in cancelled:
            client.set_flow_run_state(r.id, Cancelled(message=f"{COLLIDED} Followed up by flow run {new.name!r}"),
                                      force=True)
    return len(cancelled)


def wake_waiting(this_run, after_s: float = 1.0) -> int:
    """The runs of ``this_run``'s deployment waiting for its slot (``AwaitingConcurrencySlot``)
    are due again ``after_s`` seconds from now, once this run has ended, instead of when the
    server's retry (``PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS``, 30 s unless
    set) would have them; returns how many. The first to start takes the others over."""
    from prefect.client.orchestration import get_client
    from prefect.states import Scheduled

    at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=after_s)
    woken = 0
    with get_client(sync_client=True) as client:
        for run in _waiting_runs(client, this_run.deployment_id):
            if run.id == this_run.id or run.state is None or run.state.name != "AwaitingConcurrencySlot":
                continue
            if run.state.state_details.scheduled_time and run.state.state_details.scheduled_time <= at:
                continue
            client.set_flow_run_state(run.id, Scheduled(scheduled_time=at, name="AwaitingConcurrencySlot"),
                                      force=True)
            woken += 1
    return woken


def rename(flow_run_id: UUID, name: str) -> None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.set_flow_run_name(flow_run_id, name)


async def stand_down(client, deployment_id: UUID) -> None:
    """Pauses the deployment's schedule and disables its trigger's automations."""
    await client.pause_deployment(deployment_id)
    for automation in await client.read_resource_related_automations(f"prefect.deployment.{deployment_id}"):
        if automation.enabled:
            await client.pause_automation(automation.id)


async def remove_waiting(client, deployment_id: UUID) -> int:
    """Deletes the deployment's runs that have not started (scheduled, or waiting for its
    slot); returns how many."""
    removed = 0
    while True:  # always the first page: the runs of the page before are deleted
        page = await client.read_flow_runs(**_runs_query(deployment_id), offset=0)
        for run in page:
            await client.delete_flow_run(run.id)
        removed += len(page)
        if len(page) < _PAGE:
            return removed


async def end_orphans(client, deployment_id: UUID) -> list[str]:
    """Ends ``Cancelled`` the deployment's runs that started and never reached a final state,
    once serve's runner and every process it started are gone (their process was killed, or
    started just as the runner stopped and was never cancelled by it); returns their names.
    Left ``Running``, such a run would keep the deployment's only slot."""
    from prefect.states import Cancelled

    ended = []
    for run in await client.read_flow_runs(**_runs_query(deployment_id, ("PENDING", "RUNNING", "CANCELLING"))):
        state = Cancelled(message="critpath serve stopped while this refresh ran; its process ended "
                                  "without reporting a final state")
        await client.set_flow_run_state(run.id, state, force=True)
        ended.append(run.name)
    return ended


def emit(names: Iterable[str], source: str = "critpath emit") -> list[str]:
    """Sends one ``critpath.service.updated`` event per name to the Prefect API in the
    settings, through Prefect's events client, and returns their ids once the server has
    them (the client's websocket confirms each). Raises ``ConnectionError`` with one line
    when the server cannot be reached."""
    import asyncio

    from prefect.events import Event
    from prefect.events.clients import PrefectEventsClient
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    events = [Event(event=EVENT, resource={"prefect.resource.id": resource_id(n), "prefect.resource.name": n},
                    payload={"source": source}) for n in names]

    async def send() -> None:
        async with PrefectEventsClient(api_url=url, reconnection_attempts=1) as client:
            for event in events:
                await client.emit(event)

    from ..support.logs import quiet

    try:
        with quiet("prefect.events.clients", level=logging.CRITICAL):  # said below, in one line
            asyncio.run(send())
    except Exception as exc:  # websockets' and OSError's many kinds: the server is not there
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConnectionError(f"the Prefect server at {url} does not take events ({reason}); "
                              "is it running, and is PREFECT_API_URL right?") from None
    return [str(e.id) for e in events]


# -- inside a served refresh ------------------------------------------------------------------

def coalesced(g, state_dir: str, event: str | None):
    """This run's part of the served graph ``g``, once it holds the state folder's lock (as
    ``critpath run`` does, so a manual run and a served one never overlap) and has taken over
    the runs waiting behind it (``take_over``); the flow run is renamed to say why it runs.
    Returns (the lock, held; the graph, or None when nothing is left to do; why)."""
    from prefect.context import FlowRunContext
    from prefect.logging import get_run_logger

    from ..planning.coalescing import run_name, union
    from ..planning.selection import select

    lock = _state_lock(state_dir)
    this = FlowRunContext.get().flow_run
    reasons = [split_events(event) if event else None]
    if this.deployment_id is not None:
        reasons += take_over(this, datetime.datetime.now(datetime.timezone.utc))
    chosen = union(reasons, g.names)
    log = get_run_logger()
    if chosen.unknown:
        log.warning(f"critpath: the served graph has no service {', '.join(map(repr, chosen.unknown))}; "
                    "events naming it refresh nothing")
    label = run_name(chosen, len(reasons) - 1, scheduled=event is None and bool(this.auto_scheduled))
    try:
        rename(this.id, label)
    except Exception as exc:  # the name is a courtesy; the refresh goes on
        log.warning(f"critpath: could not rename the flow run to {label!r}: {exc}")
    log.info(f"critpath: {label}" + (f"; selection {chosen.expression}" if chosen.services else ""))
    if chosen.empty:
        lock.release()
        return lock, None, f"nothing to refresh: {label}"
    return lock, select(g, chosen.expression), label


def _state_lock(state_dir: str):
    """The state folder's lock, waited for without blocking signals: serve's stop (SIGTERM,
    critpath's handler) is seen between tries."""
    import time

    from prefect.logging import get_run_logger

    from ..execution.ledger import LockHeld, StateLock

    lock = StateLock(state_dir)
    said = False
    while True:
        try:
            return lock.acquire(wait=False)
        except LockHeld:
            if not said:
                get_run_logger().info(f"critpath: another refresh holds {lock.path}; waiting for it")
                said = True
            time.sleep(0.2)  # flock offers no event to wait on; a bounded nap per try


def follow_up_after(this) -> None:
    """``follow_up`` for the flow run ``this``, once it has ended; a failure is a warning."""
    from prefect.logging import get_run_logger

    if this.deployment_id is None:
        return
    try:
        taken = follow_up(this, this.start_time or this.created)
        wake_waiting(this)
    except Exception as exc:
        get_run_logger().warning(f"critpath: could not start the follow-up refresh: {exc}")
        return
    if taken:
        get_run_logger().info(f"critpath: {taken} event run(s) skipped while this refresh ran: "
                              "one follow-up refresh started for them")
