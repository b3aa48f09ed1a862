"""Ray: a local Ray instance started here, or an existing cluster at ``address``.

Only the service body crosses to Ray (``execute.remote(job)``, one CPU each, no
Ray-side retries: the dispatcher owns retries). Completion comes back through
``ObjectRef.future()``'s done-callback. Cancelling forces the worker process to
exit, which is the only way to stop a body that is stuck.

Environment: Ray writes a job's ``runtime_env`` in clear to its session logs
(``runtime_env_agent.log``), so nothing that may be a credential
goes there. A local instance is started from this process, and its workers
inherit this environment as it is: ``runtime_env`` carries only ``PYTHONPATH``.
An existing cluster's workers have their own environment; they also get the
refresh's documented knobs (``FORWARDED``: settings, not credentials). Secrets
for services on a cluster come from Prefect Secret blocks
(``orchestrator.flows.credentials.secret``) or from the cluster's own environment.
"""
from __future__ import annotations

import logging
import os
import sys

from .base import Done, Job, WorkerLost, execute, probe

#: Environment variables an existing cluster's workers get from here: the knobs services read
#: (README, "The bundled refresh"). Never every CRITPATH_* variable: one may hold a password.
FORWARDED = ("CRITPATH_SCALE", "CRITPATH_WAREHOUSE", "CRITPATH_FAULT")


class RayRunner:
    name = "ray"

    def __init__(self, workers: int = 4, address: str | None = None):
        self.workers = workers
        self.address = address
        self.capacity = workers
        self.cores: float | None = None
        self._started = False

    def __enter__(self):
        import ray

        # local workers inherit this environment; only a remote cluster's need the knobs
        env = {k: os.environ[k] for k in FORWARDED if k in os.environ} if self.address else {}
        # Ray workers do not inherit the driver's sys.path: give them the project's
        # folders (where service modules live), not site-packages, which they have
        own = [p for p in sys.path if p and os.path.isdir(p) and "site-packages" not in p
               and not p.startswith(sys.base_prefix)]
        paths = dict.fromkeys([os.getcwd(), *own, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])
        env["PYTHONPATH"] = os.pathsep.join(paths)
        kwargs = dict(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False,
                      runtime_env={"env_vars": env})
        if ray.is_initialized():  # a user's own ray.init() wins
            pass
        elif self.address:
            if self.address != "auto":
                probe(self.address.removeprefix("ray://"), 6379)
            ray.init(address=self.address, **kwargs)
            self._started = True
        else:
            # a local instance talks over loopback only, not the machine's interface address
            ray.init(num_cpus=self.workers, _node_ip_address="127.0.0.1", **kwargs)
            self._started = True
        if self.address:
            self.cores = float(ray.cluster_resources().get("CPU", self.workers))
            self.capacity = int(self.cores)
        self._execute = ray.remote(num_cpus=1, max_retries=0)(execute)
        self.warm()
        return self

    def warm(self) -> None:
        """Run a no-op job on every slot. It runs ``execute`` itself, because a worker
        imports each remote function on its first call (100-200 ms here); a separate
        warm-up function would leave that to the first services, on the critical path."""
        import ray

        ray.get([self._execute.remote(Job(f"warm#{i}", "warm", duration=0.0)) for i in range(self.capacity)])

    def __exit__(self, *exc):
        import ray

        if self._started:
            ray.shutdown()

    def submit(self, job: Job, priority: float, done: Done):
        ref = self._execute.remote(job)

        def callback(f):
            try:
                done(f.result())
            except BaseException as exc:  # worker died, task cancelled ...
                if type(exc).__name__ in ("WorkerCrashedError", "NodeDiedError", "OutOfMemoryError"):
                    exc = WorkerLost(f"ray worker died while running {job.name!r}: {exc}")
                done(exc)

        ref.future().add_done_callback(callback)
        return ref

    def cancel(self, handle) -> None:
        import ray

        ray.cancel(handle, force=True)
