"""One small module per engine behind the ``runners.base.Runner`` interface.

Engines are imported lazily: ``critpath plan`` and the threads runner never
import Dask or Ray. This package imports nothing from ``orchestrator``: the
orchestrator depends on the runner contract, never the other way round.
"""
from __future__ import annotations

import importlib

from .base import RunnerSetupError

RUNNERS = {
    "threads": "runners.threads:ThreadRunner",
    "processes": "runners.processes:ProcessRunner",
    "dask": "runners.dask:DaskRunner",
    "ray": "runners.ray:RayRunner",
}


def make_runner(name: str, workers: int, address: str | None = None, code=None):
    """The runner called ``name`` (one of ``RUNNERS``; the caller has checked it). ``code``
    (a ``base.Code``): the service code a cluster runner ships to its workers, or checks for."""
    module, _, cls = RUNNERS[name].partition(":")
    extra = {} if code is None else {"code": code}  # only the cluster runners take it
    try:
        return getattr(importlib.import_module(module), cls)(workers=workers, address=address, **extra)
    except ValueError as exc:
        raise RunnerSetupError(str(exc)) from None
