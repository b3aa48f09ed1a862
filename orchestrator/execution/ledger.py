"""The run ledger: what completed, recorded the moment it completed.

One JSON line per completed service, appended with a single ``os.write`` on an
``O_APPEND`` descriptor before the dispatcher goes on. The kernel holds the line
as soon as the call returns, so killing the orchestrator, even with SIGKILL,
loses nothing that completed (surviving a power cut would need an fsync per line,
which the critical path should not pay). ``critpath run --resume`` reads it back
and runs only what is not in it.

Layout: ``<state_dir>/runs/<run_id>/ledger.jsonl`` and ``<state_dir>/last-run-id``.
Run ids are generated here (a UUID), never taken from service names, so nothing
a graph says can steer a path out of the state folder.
"""
from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path

from ..planning.errors import CritpathError
from .events import Event

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


class Ledger:
    def __init__(self, state_dir: str | os.PathLike, run_id: str | None = None):
        self.run_id = run_id or uuid.uuid4().hex
        self.dir = Path(state_dir) / "runs" / self.run_id
        self.path = self.dir / "ledger.jsonl"
        self._fd: int | None = None
        self.state_dir = Path(state_dir)

    def __enter__(self):
        make_folder(self.state_dir)  # the error names state_dir, not a folder inside it
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            (self.state_dir / "last-run-id").write_text(self.run_id + "\n")
        except OSError as exc:  # e.g. a folder that exists but is read-only
            self.__exit__()
            raise _unusable(self.state_dir, exc) from None
        return self

    def __exit__(self, *exc):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def on_event(self, kind: Event, run, t: float, **info) -> None:
        if kind == Event.COMPLETE:
            line = json.dumps({"service": run.name, "end": run.end, "attempts": run.attempts,
                               "worker": run.worker}, ensure_ascii=True) + "\n"
            os.write(self._fd, line.encode())

    def record_resumed(self, names) -> None:
        """Carry completions over from the run being resumed, so a resumed run can be resumed."""
        for name in names:
            os.write(self._fd, (json.dumps({"service": name, "resumed": True}) + "\n").encode())


STATE_DIR_FIX = "set state_dir in critpath.toml to a folder you can write"


def make_folder(folder: str | os.PathLike, what: str = "state_dir", fix: str = STATE_DIR_FIX) -> Path:
    """``folder``, created if need be, before anything runs: a folder that cannot be
    created (under a file, read-only, a NUL in its name) is bad input named with the
    setting it came from, not a traceback after the refresh."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise _unusable(path, exc, what, fix) from None
    return path


def _unusable(path: Path, exc: Exception, what: str = "state_dir", fix: str = STATE_DIR_FIX) -> CritpathError:
    reason = getattr(exc, "strerror", None) or str(exc)
    return CritpathError(f"{what} {str(path)!r}: cannot create or write that folder ({reason}); {fix}")


def completed_in(state_dir: str | os.PathLike, run_id: str | None) -> tuple[str, set[str]]:
    """(run id, names completed) of ``run_id``, or of the last run when ``run_id`` is None."""
    state = Path(state_dir)
    if run_id is None:
        marker = state / "last-run-id"
        if not marker.is_file():
            raise CritpathError(f"--resume: no earlier run in {str(state)!r}; run 'critpath run' first")
        run_id = marker.read_text().strip()
    if not _RUN_ID.match(run_id):
        raise CritpathError(f"--resume {run_id!r}: not a run id (32 hex characters, as printed by "
                            "'critpath run')")
    path = state / "runs" / run_id / "ledger.jsonl"
    if not path.is_file():
        raise CritpathError(f"--resume {run_id!r}: no ledger at {str(path)!r}")
    done = set()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:  # a line cut short by a crash is skipped: that service runs again
            done.add(json.loads(line)["service"])
        except (ValueError, KeyError, TypeError):
            continue
    return run_id, done
