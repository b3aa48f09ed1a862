"""The run ledger: what completed, recorded the moment it completed; and the state lock.

One JSON line per completed service, appended with a single ``os.write`` on an
``O_APPEND`` descriptor before the dispatcher goes on. The kernel holds the line
as soon as the call returns, so killing the orchestrator, even with SIGKILL,
loses nothing that completed (surviving a power cut would need an fsync per line,
which the critical path should not pay). ``critpath run --resume`` reads it back
and runs only what is not in it.

Layout, in ``<state_dir>``:
  * ``runs/<run_id>/ledger.jsonl``: one line per completion: ``{"service": ..., "end": ...}``, or
    ``{"service": ..., "resumed": true}`` for one carried over from the run it resumes;
  * ``runs/<run_id>/attempts.jsonl``: the attempts' journal: ``{"dispatch": name, "attempt": n}``
    as an attempt goes to the runner, ``{"ended": name, "attempt": n, "as": "retry"}`` (or
    ``fail``, ``cancel``) when one ends without completing, and ``{"end": "completed"}`` (or
    ``failed``, ``cancelled``) when the run ends normally. A run without that last line ended
    abruptly, and what it had dispatched but not finished was in flight then;
  * ``last-run-id``: the run ``--resume`` resumes by default;
  * ``lock``: held (``flock``) by the refresh that uses the folder, with its pid in it.

Hand-over: a resumed run's ledger is written whole, with every completion of the run it
resumes (whatever the new run's selection), before ``last-run-id`` names it; both writes
replace a file atomically. A kill at any moment leaves ``last-run-id`` naming a complete
ledger: the old one, or the new one with everything carried over.

Run ids are generated here (a UUID), never taken from service names, so nothing
a graph says can steer a path out of the state folder.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from ..planning.errors import CritpathError
from ..support.files import write_text
from .events import Event

_RUN_ID = re.compile(r"[0-9a-f]{32}")
#: attempt endings other than a completion (which is the ledger's own line)
_ENDED = {Event.RETRY: "retry", Event.FAIL: "fail", Event.CANCEL: "cancel"}


def _text(record: dict) -> str:
    return json.dumps(record, ensure_ascii=True) + "\n"


def _line(record: dict) -> bytes:
    return _text(record).encode()


class Ledger:
    """``with Ledger(state_dir, resumed=names) as ledger``: a new run's ledger (and journal),
    holding ``resumed`` (the completions carried over) before ``last-run-id`` names it."""

    def __init__(self, state_dir: str | os.PathLike, run_id: str | None = None, resumed: Iterable[str] = ()):
        self.run_id = run_id or uuid.uuid4().hex
        self.state_dir = Path(state_dir)
        self.dir = self.state_dir / "runs" / self.run_id
        self.path = self.dir / "ledger.jsonl"
        self.journal = self.dir / "attempts.jsonl"
        self.resumed = list(resumed)
        self._fd: int | None = None
        self._journal_fd: int | None = None

    def __enter__(self):
        make_folder(self.state_dir)  # the error names state_dir, not a folder inside it
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            # whole before anything names it: a kill here leaves last-run-id on the old run
            write_text(self.path, "".join(_text({"service": n, "resumed": True}) for n in self.resumed))
            write_text(self.journal, "")
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            self._journal_fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND)
            write_text(self.state_dir / "last-run-id", self.run_id + "\n")
        except OSError as exc:  # e.g. a folder that exists but is read-only
            self.__exit__()
            raise _unusable(self.state_dir, exc) from None
        return self

    def __exit__(self, *exc):
        for attr in ("_fd", "_journal_fd"):
            fd = getattr(self, attr)
            if fd is not None:
                os.close(fd)
                setattr(self, attr, None)

    def on_event(self, kind: Event, run, t: float, **info) -> None:
        if kind == Event.COMPLETE:
            os.write(self._fd, _line({"service": run.name, "end": run.end, "attempts": run.attempts,
                                      "worker": run.worker}))
        elif kind == Event.DISPATCH:  # before the runner has it: a kill from here on finds it in flight
            os.write(self._journal_fd, _line({"dispatch": run.name, "attempt": info.get("attempt", run.attempts)}))
        elif kind in _ENDED:
            os.write(self._journal_fd, _line({"ended": run.name, "attempt": run.attempts, "as": _ENDED[kind]}))

    def record_resumed(self, names) -> None:
        """Append completions carried over (``Ledger(..., resumed=names)`` writes them atomically
        before the run is named the last one: prefer it)."""
        for name in names:
            os.write(self._fd, _line({"service": name, "resumed": True}))

    def finish(self, status: str) -> None:
        """The end marker: the run ended normally (``completed``, ``failed`` or ``cancelled``)."""
        os.write(self._journal_fd, _line({"end": status}))


class LockHeld(CritpathError):
    """Another refresh holds the state folder and the caller would not wait."""


class StateLock:
    """``<state_dir>/lock``, held with ``flock`` for a whole refresh, so two refreshes never
    share a state folder at once. The kernel releases it when the holder dies, however it
    dies; the holder's pid is written in the file for the one that waits."""

    def __init__(self, state_dir: str | os.PathLike):
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / "lock"
        self._fd: int | None = None

    def acquire(self, wait: bool = True, on_wait: Callable[[Path, int | None], None] | None = None) -> "StateLock":
        """Take the lock; if another process holds it, ``on_wait(path, its pid)`` then block
        until it is free, or, with ``wait=False``, raise ``LockHeld``."""
        make_folder(self.state_dir)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise _unusable(self.state_dir, exc) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _pid_in(fd)
                if not wait:
                    raise LockHeld(f"another refresh holds {str(self.path)!r}{_pid_text(holder)} and --no-wait "
                                   "was given; run again once it has ended, or without --no-wait to wait "
                                   "for it") from None
                if on_wait is not None:
                    on_wait(self.path, holder)
                fcntl.flock(fd, fcntl.LOCK_EX)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            os.close(fd)
            raise _unusable(self.state_dir, exc) from None
        except BaseException:  # LockHeld, or a signal while waiting
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)  # no stale pid for the next one to name
            except OSError:
                pass
            os.close(self._fd)  # closing the only descriptor releases the lock
            self._fd = None

    def __enter__(self) -> "StateLock":
        if self._fd is None:
            self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _pid_in(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def _pid_text(pid: int | None) -> str:
    return f" (pid {pid})" if pid is not None else ""


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


@dataclass(frozen=True)
class RunRecord:
    """What a run's files say: its id, what completed (carried over included), and, when it
    ended abruptly (no end marker), what was in flight then; ``in_flight`` is None when it
    ended normally or kept no journal (a run from before the journal existed)."""
    run_id: str
    done: frozenset[str]
    in_flight: tuple[str, ...] | None


def completed_in(state_dir: str | os.PathLike, run_id: str | None) -> tuple[str, set[str]]:
    """(run id, names completed) of ``run_id``, or of the last run when ``run_id`` is None."""
    record = read_run(state_dir, run_id)
    return record.run_id, set(record.done)


def read_run(state_dir: str | os.PathLike, run_id: str | None) -> RunRecord:
    """The ``RunRecord`` of ``run_id``, or of the last run when ``run_id`` is None."""
    state = Path(state_dir)
    if run_id is None:
        run_id = _last_run_id(state)
    if not _RUN_ID.fullmatch(run_id):
        raise CritpathError(f"--resume {run_id!r}: not a run id (32 hex characters, as printed by "
                            "'critpath run')")
    path = state / "runs" / run_id / "ledger.jsonl"
    if not path.is_file():
        raise CritpathError(f"--resume {run_id!r}: no ledger at {str(path)!r}")
    done = {r["service"] for r in _records(path) if isinstance(r.get("service"), str)}
    return RunRecord(run_id, frozenset(done), _in_flight(path.with_name("attempts.jsonl"), done))


def _last_run_id(state: Path) -> str:
    marker = state / "last-run-id"
    if not marker.is_file():
        raise CritpathError(f"--resume: no earlier run in {str(state)!r}; run 'critpath run' first")
    fix = (f"delete it and name the run to resume, 'critpath run --resume RUN_ID' (the run ids are the "
           f"folder names in {str(state / 'runs')!r})")
    try:
        text = marker.read_bytes().decode("utf-8").strip()
    except UnicodeDecodeError:
        raise CritpathError(f"--resume: {str(marker)!r} is not UTF-8 text, so it names no run; {fix}") from None
    except OSError as exc:
        raise CritpathError(f"--resume: cannot read {str(marker)!r} ({exc.strerror or exc}); {fix}") from None
    if not _RUN_ID.fullmatch(text):
        raise CritpathError(f"--resume: {str(marker)!r} holds {text[:40]!r}, not a run id (32 hex characters); "
                            f"{fix}")
    return text


def _records(path: Path) -> Iterable[dict]:
    """The JSON objects of a ledger or journal, one a line; a line cut short by a crash (or
    anything else that is not an object) is skipped: for a completion, that service runs again."""
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            yield record


def _in_flight(journal: Path, done: set[str]) -> tuple[str, ...] | None:
    """What the run had dispatched and neither completed nor ended otherwise, if it has no end
    marker; None if it has one, or no journal."""
    if not journal.is_file():
        return None
    running: dict[str, bool] = {}
    for record in _records(journal):
        if "end" in record:
            return None
        if isinstance(name := record.get("dispatch"), str):
            running[name] = True
        elif isinstance(name := record.get("ended"), str):
            running[name] = False
    return tuple(sorted(n for n, now in running.items() if now and n not in done))
