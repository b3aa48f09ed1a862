"""Pools shared across refreshes as Prefect global concurrency limits (``--shared-pools``).

Each pool ``P`` of the graph is the global concurrency limit ``critpath-P`` on the Prefect
server every refresh talks to; it is created with the configured limit when missing. When it
exists with another limit, the server's wins: other refreshes (and anyone watching the Prefect
UI) already work with it, and one refresh's config silently changing a limit that others share
would be worse than a notice. ``prefect gcl update critpath-P --limit N`` changes it for all.

Each attempt of a pooled service takes one slot with a lease (``increment-with-lease``,
never blocking: a full limit answers 423 with a Retry-After hint, and the dispatcher tries that
pool again later while other pools go on) and gives it back when the attempt ends. A thread
renews the leases of running attempts; if this refresh dies (even by SIGKILL) nobody renews
them, they expire, and the server's repossessor service hands the slots back. Prefect accepts
leases of 60 s at least, so that is how long a dead refresh's slots stay taken, plus up to one
repossessor loop (``PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS``, default 15 s).
"""
from __future__ import annotations

import sys
import threading
from uuid import UUID

from ..execution.sharing import Busy, Lease
from ..planning.errors import CritpathError

#: a lease's life: the shortest the server accepts, so a dead refresh's slots return soonest
LEASE_S = 60.0
#: renewed this often: two renewals may fail (a busy server) before a lease lapses
RENEW_EVERY_S = LEASE_S / 3
#: how soon to ask again when the server could not be asked at all
UNREACHABLE_RETRY_S = 2.0


def limit_name(pool: str) -> str:
    return f"critpath-{pool}"


def _say(line: str) -> None:
    try:
        print(f"critpath: {line}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def require_server() -> str:
    """The configured server's API URL; one clear error when there is none (critpath's own
    temporary server would share the pools with nobody)."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        raise CritpathError("--shared-pools needs a Prefect server that every refresh sharing the pools talks to, "
                            "and PREFECT_API_URL is not set: start one (critpath server) and set PREFECT_API_URL "
                            "to its API, or run without --shared-pools (shared_pools = false)")
    return url


def ensure_limits(pools: dict[str, int]) -> dict[str, int]:
    """Every pool's global concurrency limit on the configured server, created when missing;
    returns the limits in force (the server's, where it already had one). One clear error
    when there is no server to share them through."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    url = require_server()
    in_force: dict[str, int] = {}
    with get_client(sync_client=True) as client:
        failure = client.api_healthcheck()
        if failure is not None:
            raise CritpathError(f"--shared-pools: the Prefect server at {url} does not answer "
                                f"({type(failure).__name__}); start it, or run without --shared-pools")
        for pool, wanted in sorted(pools.items()):
            name = limit_name(pool)
            try:
                have = client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                try:
                    client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=wanted))
                    in_force[pool] = wanted
                    continue
                except ObjectAlreadyExists:  # another refresh created it meanwhile
                    have = client.read_global_concurrency_limit_by_name(name)
            if not have.active:
                _say(f"shared pool {pool!r}: the server's limit {name} is inactive, so it limits nothing across "
                     f"refreshes (this refresh still keeps to {wanted}); activate it with "
                     f"'prefect gcl enable {name}'")
            elif have.limit < 1:
                raise CritpathError(f"shared pool {pool!r}: the server's limit {name} is {have.limit}, so no "
                                    f"service of the pool could ever start; set it with "
                                    f"'prefect gcl update {name} --limit {wanted}'")
            elif have.limit != wanted:
                _say(f"shared pool {pool!r}: the server's limit {name} = {have.limit} wins over this config's "
                     f"{wanted}, as other refreshes share it; change it for all with "
                     f"'prefect gcl update {name} --limit {wanted}'")
            in_force[pool] = have.limit if have.active else wanted
    return in_force


def shared_graph(graph):
    """``graph`` with its pools' limits as shared across refreshes (``ensure_limits``: the
    server's, where it already had one), and those limits; the refresh plans and keeps to them."""
    from ..planning.graph import Graph

    limits = ensure_limits(graph.pools)
    return Graph([graph.services[n] for n in graph.names], {**graph.pools, **limits}, graph.source), limits


class PrefectSharedSlots:
    """``execution.sharing.SharedSlots`` on Prefect's global concurrency limits, with leases
    held by ``flow_run_id``. Used as a context manager: the renewing thread runs inside it,
    and leaving it gives back whatever is still held."""

    def __init__(self, flow_run_id: UUID | str | None):
        self.flow_run_id = flow_run_id
        self._held: dict[str, Lease] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._said_unreachable = False
        self._said_busy: set[str] = set()
        self._client = None
        self._renewer: threading.Thread | None = None

    def __enter__(self) -> PrefectSharedSlots:
        from prefect.client.orchestration import get_client

        self._client = get_client(sync_client=True)
        self._client.__enter__()
        self._renewer = threading.Thread(target=self._renew, name="critpath-shared-leases", daemon=True)
        self._renewer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for lease in list(self._held.values()):
            self.give_back(lease)
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        self._client.__exit__(None, None, None)

    def take(self, pool: str) -> Lease | Busy:
        from httpx import HTTPError, HTTPStatusError
        from prefect.client.schemas.objects import ConcurrencyLeaseHolder

        holder = (ConcurrencyLeaseHolder(type="flow_run", id=UUID(str(self.flow_run_id)))
                  if self.flow_run_id else None)
        try:
            response = self._client.increment_concurrency_slots_with_lease(
                [limit_name(pool)], 1, "concurrency", LEASE_S, holder=holder)
        except HTTPStatusError as exc:
            if exc.response.status_code == 423:  # every slot taken: the server says when to ask again
                if pool not in self._said_busy:  # once per pool: why this refresh's services wait
                    self._said_busy.add(pool)
                    _say(f"shared pool {pool!r}: every slot of {limit_name(pool)} is held by other refreshes; "
                         "its services wait for one, the others go on")
                try:
                    return Busy(float(exc.response.headers.get("Retry-After", 1.0)))
                except ValueError:
                    return Busy(1.0)
            return self._unreachable(exc)
        except HTTPError as exc:
            return self._unreachable(exc)
        lease = Lease(pool, str(response.json()["lease_id"]))
        with self._lock:
            self._held[lease.id] = lease
        return lease

    def give_back(self, lease: Lease) -> None:
        with self._lock:
            if self._held.pop(lease.id, None) is None:
                return
        try:
            self._client.release_concurrency_slots_with_lease(UUID(lease.id))
        except Exception as exc:  # the lease expires on its own: the slot comes back within a minute
            self._unreachable(exc)

    def _unreachable(self, exc: BaseException) -> Busy:
        if not self._said_unreachable:
            self._said_unreachable = True
            _say(f"shared pools: the Prefect server did not answer ({type(exc).__name__}: "
                 f"{str(exc).splitlines()[0] if str(exc) else ''}); pooled services wait for it")
        return Busy(UNREACHABLE_RETRY_S)

    def _renew(self) -> None:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:  # its own: the dispatcher's is not shared across threads
            while not self._stop.wait(RENEW_EVERY_S):
                with self._lock:
                    held = list(self._held.values())
                for lease in held:
                    try:
                        client.renew_concurrency_lease(UUID(lease.id), LEASE_S)
                    except Exception as exc:  # e.g. the server restarting: the next round tries again
                        if lease.id in self._held:  # not given back meanwhile
                            self._unreachable(exc)
