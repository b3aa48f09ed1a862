"""Writing a file so that a reader never sees half of it, and nothing is left behind.

The one atomic-write helper: reports, timeline pages, the bench's JSON and the
refinery's tables all go through it. The temporary file is in the same folder (so
the final ``os.replace`` is a rename), named with the pid and a random part (two
processes writing the same file never share one), and removed whatever happens.
"""
from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; on success move it onto ``final``, else delete it.

    For files another library builds itself (DuckDB, pyarrow); ``write_text`` for text."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> Path:
    """``text`` to ``path``, atomically; returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        # os.open honours the umask, unlike mkstemp's 0600
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
    return path
