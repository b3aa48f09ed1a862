"""How many services each worker process runs at once: the runners' process layout.

Services that a worker process runs at once, as threads, share its interpreter lock;
services in different processes share only the cores. The machine model
(``orchestrator.planning.machine``) needs to know which, so each runner that puts
several services in one process says how (``threads_per_process``), and a plan made
before the runner has started works it out here from the same rule the runner uses.

This module imports no engine: ``critpath plan --runner dask`` must not start Dask.
"""
from __future__ import annotations

import math
import os


def local_dask(slots: int, cpus: int | None = None) -> tuple[int, ...]:
    """The threads of each worker process of the ``LocalCluster`` that ``runners.dask`` starts
    for ``slots``: one process per CPU (never more than slots), the slots spread over them
    (8 slots on 2 CPUs: ``(4, 4)``). More processes would share the same cores and cost a
    start-up each; fewer would put more services behind one interpreter lock."""
    procs = max(1, min(slots, cpus or os.cpu_count() or 1))
    return (math.ceil(slots / procs),) * procs
