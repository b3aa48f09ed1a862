"""One small module per engine behind the ``runners.base.Runner`` interface.

Engines are imported lazily: ``critpath plan`` and the threads runner never
import Dask or Ray.
"""
from __future__ import annotations

import importlib

RUNNERS = {
    "threads": "runners.threads:ThreadRunner",
    "processes": "runners.processes:ProcessRunner",
    "dask": "runners.dask:DaskRunner",
    "ray": "runners.ray:RayRunner",
}


def make_runner(name: str, workers: int, address: str | None = None):
    from orchestrator.errors import CritpathError, did_you_mean

    if name not in RUNNERS:
        raise CritpathError(f"unknown runner {name!r}{did_you_mean(name, RUNNERS)}; "
                            f"choose one of: {', '.join(RUNNERS)}")
    module, _, cls = RUNNERS[name].partition(":")
    try:
        return getattr(importlib.import_module(module), cls)(workers=workers, address=address)
    except ValueError as exc:
        raise CritpathError(str(exc)) from None
