"""The bench environment: one real ``prefect server start`` for every run of a bench.

critpath and the Prefect-native baseline talk to the same server, started here on
127.0.0.1 with a private ``PREFECT_HOME`` (its own SQLite database, removed after)
and the task-run recorder settings of ``orchestrator.flows.flow.SERVER_DEFAULTS`` (batch
size 500 instead of Prefect's 1). A temporary in-process server would not do:
Prefect-native tasks on Dask worker processes need an API they can reach
(BASELINES.md, "Server process did not start").

``bench_environment()`` also sets, in ``os.environ`` and before any engine starts,
what every worker process must inherit: ``PREFECT_API_URL`` (Prefect-native tasks
on Dask and Ray workers report to it), the repository root on ``PYTHONPATH`` (Ray
workers do not receive the driver's ``sys.path``) and a scratch warehouse for the
bundled refresh. Everything is restored on exit.
"""
from __future__ import annotations

import os
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from orchestrator.flows.server import drain
from orchestrator.flows.settings import server_fixes

ROOT = Path(__file__).resolve().parent.parent
#: /api/health answers after 10-15 s on a 2-core machine (BASELINES.md); more when loaded
START_TIMEOUT_S = 120


@dataclass(frozen=True)
class Server:
    url: str  # http://127.0.0.1:PORT/api
    pid: int  # leader of its own process group

    def cpu_seconds(self) -> float:
        """CPU time used so far by the server's process group and by every process
        this one started (engine workers, Ray's raylet and its workers, ...)."""
        procs = _processes()
        mine = _descendants(procs, os.getpid())
        return sum(cpu for pid, (ppid, pgrp, cpu) in procs.items() if pgrp == self.pid or pid in mine) \
            / os.sysconf("SC_CLK_TCK")

    def settle(self, busy: float = 0.2, window: float = 0.5, limit: float = 60.0) -> float:
        """Wait (at most ``limit`` s) until the server and our engines together use
        under ``busy`` of a core.

        After a run the server still digests its events (task-run states, logs), and
        a Prefect-native run on Ray leaves dozens of Ray workers starting up; a
        measurement started then would share the 2 cores with them. Returns the
        seconds waited. This is the harness keeping runs apart, not a poll for a
        run's state.
        """
        if not Path("/proc/self/stat").exists():
            return 0.0
        t0 = time.monotonic()
        before = self.cpu_seconds()
        while time.monotonic() - t0 < limit:
            time.sleep(window)
            now = self.cpu_seconds()
            # below 0: processes ended within the window, their CPU unknown: look again
            if 0 <= now - before < busy * window:
                break
            before = now
        return time.monotonic() - t0


def _processes() -> dict[int, tuple[int, int, int]]:
    """pid -> (ppid, process group, utime + stime in ticks), from /proc."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):  # the process ended while we looked
            continue
        out[int(stat.parent.name)] = (int(fields[1]), int(fields[2]), int(fields[11]) + int(fields[12]))
    return out


def _descendants(procs: dict, root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    seen, todo = set(), [root]
    while todo:
        for c in children.get(todo.pop(), ()):
            if c not in seen:
                seen.add(c)
                todo.append(c)
    return seen


@contextmanager
def prefect_server(home: Path) -> Iterator[Server]:
    """A fresh ``prefect server start`` on 127.0.0.1."""
    from orchestrator.flows import server as ps
    from orchestrator.flows.settings import SERVER_DEFAULTS

    env = {**os.environ, **SERVER_DEFAULTS}  # the bench's server: these values, whatever the shell has
    env.update(server_fixes(env))
    proc, url = ps.start(home, env, START_TIMEOUT_S)
    try:
        yield Server(url, proc.pid)
    finally:
        ps.stop(proc)


@contextmanager
def _environ(**values: str) -> Iterator[None]:
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def bench_environment(keep_dir: str | None = None) -> Iterator[Server]:
    """Start the server and set the inherited environment; yields the ``Server``."""
    from orchestrator.flows.settings import prefect_env_defaults

    with ExitStack() as stack:
        scratch = Path(keep_dir) if keep_dir else Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="critpath-bench-")))
        (scratch / "prefect").mkdir(parents=True, exist_ok=True)
        server = stack.enter_context(prefect_server(scratch / "prefect"))
        url = server.url
        path = [str(ROOT), *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
        stack.enter_context(_environ(PREFECT_API_URL=url, PYTHONPATH=os.pathsep.join(dict.fromkeys(path)),
                                     CRITPATH_WAREHOUSE=str(scratch / "warehouse")))
        prefect_env_defaults()
        from prefect.settings import PREFECT_API_URL, temporary_settings

        stack.enter_context(temporary_settings(updates={PREFECT_API_URL: url}))
        stack.callback(drain)
        yield server
