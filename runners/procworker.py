"""A worker process of the processes runner: ``python -m runners.procworker IN OUT PARENT``.

Reads pickled ``Job``s from file descriptor IN, runs each with ``execute`` and
writes the pickled ``Outcome`` to OUT, one at a time, each framed by an 8-byte
length. Dedicated descriptors, not stdin/stdout, so a service that prints cannot
corrupt the stream. Started fresh (not forked, not spawned through
multiprocessing), so the parent's ``__main__`` is never re-imported here.

The worker leads a session (and process group) of its own, which every process a
service starts (``multiprocessing.Pool``, ``os.fork``, ``subprocess``) joins. Its
*guard*, a small process forked before any service runs, waits for either the
worker or critpath (PARENT) to end, however they end (``kill -9`` too), and then
kills the whole group: nothing a service started outlives its worker, and no
worker outlives critpath. The guard needs no cooperation from the worker, so it
works even while a service holds the GIL in C code, where a signal handler in the
worker would never run.
"""
from __future__ import annotations

import os
import pickle
import select
import signal
import struct
import sys

HEADER = struct.Struct("!Q")


def read_frame(f) -> bytes | None:
    head = f.read(HEADER.size)
    if len(head) < HEADER.size:
        return None
    (size,) = HEADER.unpack(head)
    data = f.read(size)
    return data if len(data) == size else None


def write_frame(f, data: bytes) -> None:
    f.write(HEADER.pack(len(data)) + data)
    f.flush()


def split_frames(buf: bytearray) -> list[bytes]:
    """Takes every complete frame off the front of ``buf``; a partial one stays."""
    frames = []
    while len(buf) >= HEADER.size:
        (size,) = HEADER.unpack_from(buf)
        if len(buf) < HEADER.size + size:
            break
        frames.append(bytes(buf[HEADER.size:HEADER.size + size]))
        del buf[:HEADER.size + size]
    return frames


def start_guard(parent: int, inherited: tuple[int, ...]) -> None:
    """Start the guard of this worker's process group (see the module docstring). Where
    the system cannot watch a process by descriptor (no ``pidfd_open``: not Linux 5.3+),
    there is no guard: the worker still ends when critpath closes its job pipe."""
    if not hasattr(os, "pidfd_open"):
        return
    try:
        critpath = os.pidfd_open(parent)
    except OSError:  # ENOSYS: no pidfd here; ESRCH: critpath is gone already
        if os.getppid() != parent:
            os._exit(1)
        return
    if os.getppid() != parent:  # critpath died before we could watch it
        os._exit(1)
    worker = os.getpid()
    # forked twice, so that the guard is not the worker's child: a service that waits for
    # "any child" until there is none must not wait for the guard
    middle = os.fork()
    if middle != 0:
        os.close(critpath)
        os.waitpid(middle, 0)
        return
    try:
        if os.fork() != 0:
            os._exit(0)
        # the guard: holds nothing of the worker's (never the result pipe) and ignores the
        # signals that may reach the group; it leaves only by killing the group, itself included
        for fd in inherited:
            os.close(fd)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        watched = [critpath, os.pidfd_open(worker)]
    except BaseException:  # no guard, rather than a worker that cannot start
        os._exit(0)
    try:
        select.select(watched, [], [])  # readable: that process has ended
    finally:
        os.killpg(0, signal.SIGKILL)
        os._exit(0)  # not reached


def main(fd_in: int, fd_out: int, parent: int | None = None) -> None:
    if parent is not None:
        start_guard(parent, (fd_in, fd_out))
    from runners.base import Outcome, describe_exception, execute

    with os.fdopen(fd_in, "rb") as jobs, os.fdopen(fd_out, "wb") as outcomes:
        while (frame := read_frame(jobs)) is not None:
            out = execute(pickle.loads(frame), shared=False)  # a process of its own
            try:
                data = pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:  # execute returns plain data; never lose the outcome if not
                data = pickle.dumps(Outcome(out.key, False, out.start, out.end, out.worker,
                                            error=f"the outcome could not be sent back: {describe_exception(exc)[0]}",
                                            secret_names=out.secret_names), protocol=pickle.HIGHEST_PROTOCOL)
            write_frame(outcomes, data)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else None)
