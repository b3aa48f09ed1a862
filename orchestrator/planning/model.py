"""The service model: what a data service is, and the decorator that declares one.

A service is plain data (a frozen record). It names *what* runs (an importable
``call`` or a synthetic ``duration``) and the constraints around it (``after``,
``pool``, ``retries``, ``timeout``). It never holds a live object, so a graph can
be validated, planned, pickled to a worker and written to a report without
touching Prefect, Dask or Ray.

Decorated functions stay ordinary callables: ``@service`` only attaches a
``Service`` record to the function (``fn.__critpath__``) and returns the function
itself, so a unit test calls it directly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping

#: Estimate used for a service that declares neither ``estimate`` nor ``duration``.
DEFAULT_ESTIMATE_S = 1.0
KINDS = ("sleep", "cpu", "work")  # work: a fixed amount of CPU time, stretched by contention


@dataclass(frozen=True)
class Service:
    name: str
    after: tuple[str, ...] = ()
    call: str | None = None  # "package.module:function"
    params: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)
    duration: float | None = None  # synthetic service: sleeps (or burns CPU) this long
    kind: str = "sleep"
    pool: str | None = None
    retries: int = 0
    retry_delay: float = 0.0
    timeout: float | None = None
    estimate: float | None = None
    tags: tuple[str, ...] = ()

    @property
    def est(self) -> float:
        """Seconds the planner assumes this service takes."""
        for value in (self.estimate, self.duration):
            if value is not None and math.isfinite(value) and value >= 0:
                return float(value)
        return DEFAULT_ESTIMATE_S

    def scaled(self, factor: float) -> "Service":
        """The same service with synthetic duration and estimate multiplied by ``factor``."""
        return replace(
            self,
            duration=None if self.duration is None else self.duration * factor,
            estimate=None if self.estimate is None else self.estimate * factor,
        )


def service(
    fn: Callable | None = None,
    *,
    name: str | None = None,
    after: Iterable[str] = (),
    pool: str | None = None,
    retries: int = 0,
    retry_delay: float = 0.0,
    timeout: float | None = None,
    estimate: float | None = None,
    tags: Iterable[str] = (),
    params: Mapping[str, Any] | None = None,
):
    """Declare a plain function as a data service.

    >>> @service(after=["load_orders"], pool="warehouse", retries=2)
    ... def build_revenue(): ...

    The function is returned unchanged (still directly callable); the record is
    at ``build_revenue.__critpath__``. It is called with ``params`` as keyword
    arguments and must be importable by ``module:qualname`` so that worker
    processes (Dask, Ray, processes) can load it.
    """

    def attach(f: Callable) -> Callable:
        if isinstance(after, str):
            raise TypeError(
                f"@service(after={after!r}) on {f.__qualname__}: 'after' takes a list of names, "
                f"write after=[{after!r}]"
            )
        f.__critpath__ = Service(
            name=name or f.__name__,
            after=tuple(after),
            call=f"{f.__module__}:{f.__qualname__}",
            params=MappingProxyType(dict(params or {})),
            pool=pool,
            retries=retries,
            retry_delay=retry_delay,
            timeout=timeout,
            estimate=estimate,
            tags=tuple(tags),
        )
        return f

    return attach(fn) if fn is not None else attach


def services_in(namespace: Mapping[str, Any]) -> list[Service]:
    """The services declared with ``@service`` in a module's namespace, in definition order."""
    return [v.__critpath__ for v in namespace.values() if isinstance(getattr(v, "__critpath__", None), Service)]
