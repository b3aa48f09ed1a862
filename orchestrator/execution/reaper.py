"""What an engine leaves behind when critpath dies without shutting it down.

A runner's engine starts processes of its own in critpath's process group (Ray's GCS,
raylet, dashboard and agents; Dask's nannies and workers). Shut down in order, they end
with the run. When critpath dies instead (``kill -9``, a second Ctrl-C, a service's
``os._exit`` on threads), most follow within a second or two, as they watch their parent,
but not all: Ray's ``DashboardAgent`` and ``RuntimeEnvAgent`` first try to tell Ray's GCS
(dead too) that their raylet died unexpectedly, and give up only after 60 s.

``Reaper`` covers that case. It is a small process in a session of its own (no signal to
critpath's group reaches it) that reads a pipe only critpath writes to. Told ``done`` (the
engine was shut down), it exits. At end of file without it (critpath died), it sends
SIGKILL to the processes it was given: critpath's descendants in critpath's own process
group once the engine had started, each checked by its start time, so that a pid the
system has since given to another process is never hit.

Linux only (it reads ``/proc``); elsewhere nothing is started. This file runs as the
reaper itself (``python -I reaper.py PID:START ...``) and must import only the standard
library at module level.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys

DONE = b"done"


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(parent pid, process group, start time in clock ticks) of ``pid``, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()  # after "pid (comm) ": comm may hold spaces
    return int(fields[1]), int(fields[2]), int(fields[19])


def engine_processes() -> list[tuple[int, int]]:
    """(pid, start time) of this process's descendants in its process group."""
    if not os.path.isdir("/proc/self"):
        return []
    stats = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (st := _stat(int(name))) is not None:
            stats[int(name)] = st
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    group, found, todo = os.getpgrp(), [], list(children.get(os.getpid(), ()))
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, ()))
        if stats[pid][1] == group:
            found.append((pid, stats[pid][2]))
    return found


class Reaper:
    """Started after an engine: kills what it started if this process dies before ``done()``."""

    def __init__(self):
        self.proc = None
        self._pipe = None
        targets = engine_processes()
        if not targets:
            return
        read_end, self._pipe = os.pipe()  # the write end stays here (not inherited by exec'd children)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", os.path.abspath(__file__), *(f"{p}:{t}" for p, t in targets)],
                stdin=read_end, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError:  # no reaper: the engine's own clean-up is all there is
            os.close(self._pipe)
            self._pipe = None
        finally:
            os.close(read_end)

    def done(self) -> None:
        """The engine was shut down: the reaper exits without killing anything."""
        if self._pipe is None:
            return
        try:
            os.write(self._pipe, DONE)
        except OSError:
            pass
        os.close(self._pipe)
        self._pipe = None
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _reap(targets: list[tuple[int, int]]) -> None:
    told = b""
    while True:
        try:
            chunk = os.read(0, 64)
        except InterruptedError:
            continue
        except OSError:
            break
        if not chunk:
            break
        told += chunk
    if told.startswith(DONE):
        return
    for pid, start in targets:
        st = _stat(pid)
        if st is not None and st[2] == start:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


if __name__ == "__main__":
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # it ends when critpath has
        signal.signal(sig, signal.SIG_IGN)
    _reap([(int(p), int(t)) for p, t in (arg.split(":") for arg in sys.argv[1:])])
