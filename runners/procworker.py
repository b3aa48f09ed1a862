"""A worker process of the processes runner: ``python -m runners.procworker IN OUT``.

Reads pickled ``Job``s from file descriptor IN, runs each with ``execute`` and
writes the pickled ``Outcome`` to OUT, one at a time, each framed by an 8-byte
length. Dedicated descriptors, not stdin/stdout, so a service that prints cannot
corrupt the stream. Started fresh (not forked, not spawned through
multiprocessing), so the parent's ``__main__`` is never re-imported here.
"""
from __future__ import annotations

import os
import pickle
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


def main(fd_in: int, fd_out: int) -> None:
    from runners.base import execute

    with os.fdopen(fd_in, "rb") as jobs, os.fdopen(fd_out, "wb") as outcomes:
        while (frame := read_frame(jobs)) is not None:
            write_frame(outcomes, pickle.dumps(execute(pickle.loads(frame)), protocol=pickle.HIGHEST_PROTOCOL))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
