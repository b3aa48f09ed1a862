"""Duration history: every attempt of every run, in SQLite, for the planner to learn from.

One file per state folder (``<state_dir>/history.sqlite``), the standard library's
``sqlite3`` in WAL mode: a row is committed the moment an attempt ends, so a crash
loses nothing that finished, and two refreshes writing at once wait for each other's
commit (``busy_timeout``) instead of corrupting the file. ``synchronous=NORMAL``: a
commit survives the process being killed (the kernel holds it); surviving a power cut
would cost an fsync per attempt on the critical path.

Rows (one per attempt): service, run id, flow run id, runner, the cores it had, the
limits in force, attempt number, outcome (completed | failed | lost | timeout |
cancelled), worker-measured start and end, the dispatcher's dispatch and finish times,
and the CPU seconds the service used (``cpu_s``: its process's CPU time where it had a
process of its own, its thread's elsewhere; ``gil_s``: where services share a process,
on the threads runner and a Dask worker's threads, its thread's CPU time, the time it
held that process's interpreter lock), and the worker process that ran it (``process``,
``host:pid``: the services of one run with the same process shared its lock). The last
``keep_runs`` runs of each service are kept (default 50).

Per run on this machine (a local runner), one more row (``machine_load``): from its first
dispatch to its last attempt's end, the CPU seconds the whole machine was busy. Less the
services' own CPU seconds, that is the load of everything else while the run ran (critpath's
bookkeeping, the Prefect server, the engine's scheduler and workers, other tenants), the
``background`` the machine model takes off the cores (``History.background``).

A file that is not a database, or a database that is not critpath's history, is one
``CritpathError`` naming the file and how to move it aside; nothing is overwritten.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from ..planning.destretch import Span, destretch, overlap
from ..planning.errors import CritpathError
from ..planning.estimates import Observed

APP = "critpath-history"
VERSION = "1"
DEFAULT_KEEP_RUNS = 50
FILENAME = "history.sqlite"
#: how long an open waits for another process setting the file up before it gives up
LOCKED_WAIT_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY,
    service TEXT NOT NULL,
    run_id TEXT NOT NULL,
    flow_run_id TEXT,
    runner TEXT NOT NULL,
    cores REAL,
    max_concurrency INTEGER,
    pools TEXT,
    attempt INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    start REAL,
    "end" REAL,
    dispatched REAL,
    finished REAL,
    cpu_s REAL,
    gil_s REAL,
    cpu_wait_s REAL,
    process TEXT,
    native_s REAL,
    recorded_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_by_service ON attempts (service, id);
CREATE TABLE IF NOT EXISTS machine_load (
    run_id TEXT PRIMARY KEY,
    runner TEXT NOT NULL,
    start REAL NOT NULL,
    "end" REAL NOT NULL,
    busy_s REAL NOT NULL,
    recorded_at REAL NOT NULL
);
"""
COLUMNS = ("service", "run_id", "flow_run_id", "runner", "cores", "max_concurrency", "pools", "attempt",
           "outcome", "start", "end", "dispatched", "finished", "cpu_s", "gil_s", "cpu_wait_s", "process", "native_s")
#: columns added since version 1's first files, with their types: added to an older file when it is opened
ADDED = {"cpu_wait_s": "REAL", "process": "TEXT", "native_s": "REAL"}


#: runs whose background load the planner reads (``History.background``)
RECENT_LOADS = 20


@dataclass(frozen=True)
class MachineLoad:
    """This machine's busy CPU seconds (every core, all processes) over one run."""
    run_id: str
    runner: str
    start: float  # the run's first dispatch
    end: float  # its last attempt's end
    busy_s: float


@dataclass(frozen=True)
class AttemptRow:
    service: str
    run_id: str
    runner: str
    attempt: int
    outcome: str
    start: float | None
    end: float | None
    dispatched: float | None = None
    finished: float | None = None
    cpu_s: float | None = None
    gil_s: float | None = None
    cpu_wait_s: float | None = None
    process: str | None = None  # host:pid of the worker process that ran it
    #: where services share a process: its thread's CPU that ran without the lock (``gil_s`` is the rest)
    native_s: float | None = None
    flow_run_id: str | None = None
    cores: float | None = None
    max_concurrency: int | None = None
    pools: Mapping[str, int] | None = None


def _not_ours(path: Path, why: str) -> CritpathError:
    return CritpathError(f"history file {str(path)!r} is not critpath's history ({why}); move it aside "
                         f"(mv {path} {path}.bak) and critpath starts a new one")


def _locked(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


class History:
    """The history store of one state folder. A context manager; also usable without one."""

    def __init__(self, state_dir: str | os.PathLike, keep_runs: int = DEFAULT_KEEP_RUNS):
        self.path = (Path(state_dir) / FILENAME).absolute()  # a service's os.chdir must not move it
        self.keep_runs = keep_runs
        self._db: sqlite3.Connection | None = None

    # -- lifetime ---------------------------------------------------------------------------------
    def open(self) -> "History":
        if self._db is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Two runs that open a new file at once race to set it up (WAL mode, the tables), and
        # SQLite answers some of those conflicts "database is locked" at once, without waiting
        # for its busy timeout: such an open starts again, a little later.
        deadline, pause = time.monotonic() + LOCKED_WAIT_S, 0.02
        while True:
            try:
                return self._open()
            except sqlite3.OperationalError as exc:  # ``_open`` lets only a lock through
                if time.monotonic() >= deadline:
                    raise CritpathError(
                        f"history file {str(self.path)!r} stayed locked for {LOCKED_WAIT_S:g} s ({exc}); another "
                        "process holds it: let it finish, or give this run its own state folder") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.5)

    def _open(self) -> "History":
        try:
            # the dispatcher's thread writes, the CLI's reads: one connection, never used at once
            db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise CritpathError(f"history file {str(self.path)!r}: cannot open it ({exc}); check the "
                                "state folder's permissions") from None
        try:
            db.execute("PRAGMA busy_timeout = 30000")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables and "meta" not in tables:
                raise _not_ours(self.path, f"it holds other tables: {', '.join(sorted(tables))}")
            db.executescript(_SCHEMA)
            have = {r[1] for r in db.execute("PRAGMA table_info(attempts)")}
            for column in sorted(set(ADDED) - have):  # a column added since the file was made
                db.execute(f"ALTER TABLE attempts ADD COLUMN {_q(column)} {ADDED[column]}")
            app = dict(db.execute("SELECT key, value FROM meta").fetchall())
            if not app:
                db.execute("INSERT OR IGNORE INTO meta VALUES ('app', ?), ('version', ?)", (APP, VERSION))
            elif app.get("app") != APP:
                raise _not_ours(self.path, f"its meta table says app={app.get('app')!r}")
            elif app.get("version") != VERSION:
                raise CritpathError(f"history file {str(self.path)!r} has version {app.get('version')!r}; this "
                                    f"critpath reads version {VERSION}: move it aside (mv {self.path} "
                                    f"{self.path}.bak) and critpath starts a new one")
        except sqlite3.DatabaseError as exc:  # "file is not a database", a corrupt page
            db.close()
            if isinstance(exc, sqlite3.OperationalError) and _locked(exc):
                raise  # open() tries again
            raise _not_ours(self.path, str(exc)) from None
        except BaseException:
            db.close()
            raise
        self._db = db
        return self

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> "History":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing ----------------------------------------------------------------------------------
    def record(self, row: AttemptRow) -> None:
        """One attempt, committed now."""
        db = self.open()._db
        values = [getattr(row, c) for c in COLUMNS]
        values[COLUMNS.index("pools")] = json.dumps(dict(row.pools)) if row.pools is not None else None
        try:
            db.execute(f"INSERT INTO attempts ({', '.join(map(_q, COLUMNS))}, recorded_at) "
                       f"VALUES ({', '.join('?' * len(COLUMNS))}, ?)", (*values, time.time()))
        except sqlite3.DatabaseError as exc:
            raise _not_ours(self.path, str(exc)) from None

    def record_load(self, load: "MachineLoad") -> None:
        """The machine's busy CPU seconds over one run, committed now."""
        db = self.open()._db
        try:
            db.execute('INSERT OR REPLACE INTO machine_load (run_id, runner, start, "end", busy_s, recorded_at) '
                       "VALUES (?, ?, ?, ?, ?, ?)",
                       (load.run_id, load.runner, load.start, load.end, load.busy_s, time.time()))
        except sqlite3.DatabaseError as exc:
            raise _not_ours(self.path, str(exc)) from None

    def prune(self, services: Iterable[str] | None = None) -> None:
        """Keep the last ``keep_runs`` runs of each service (of ``services``, default all)."""
        db = self.open()._db
        names = list(services) if services is not None else [
            r[0] for r in db.execute("SELECT DISTINCT service FROM attempts")]
        with _transaction(db):
            for name in names:
                db.execute("""DELETE FROM attempts WHERE service = ? AND run_id NOT IN (
                                  SELECT run_id FROM attempts WHERE service = ?
                                  GROUP BY run_id ORDER BY MAX(id) DESC LIMIT ?)""", (name, name, self.keep_runs))
            db.execute("DELETE FROM machine_load WHERE run_id NOT IN (SELECT DISTINCT run_id FROM attempts)")

    # -- reading ----------------------------------------------------------------------------------
    def rows(self, services: Iterable[str] | None = None) -> list[dict]:
        """Every attempt kept (of ``services``), oldest first, as dicts of ``COLUMNS``."""
        db = self.open()._db
        wanted = None if services is None else set(services)
        try:
            cur = db.execute(f"SELECT {', '.join(map(_q, COLUMNS))} FROM attempts ORDER BY id")
            rows = [dict(zip(COLUMNS, r, strict=True)) for r in cur.fetchall()]
        except sqlite3.DatabaseError as exc:
            raise _not_ours(self.path, str(exc)) from None
        return rows if wanted is None else [r for r in rows if r["service"] in wanted]

    def observed(self, services: Iterable[str] | None = None) -> dict[str, list[Observed]]:
        """The successful attempts of each service, oldest first, as the planner reads them: each
        with the time it would have taken alone (``planning.destretch``), its wall time beside it."""
        rows = self.rows()  # a run's other services are needed to see what it shared
        alone, lock_wait = _alone(rows)
        wanted = None if services is None else set(services)
        out: dict[str, list[Observed]] = {}
        for k, r in enumerate(rows):
            if (r["outcome"] != "completed" or r["start"] is None or r["end"] is None
                    or (wanted is not None and r["service"] not in wanted)):
                continue
            wall = max(0.0, r["end"] - r["start"])
            overhead = None
            if r["dispatched"] is not None and r["finished"] is not None:
                # less the lock waits around it: a thread that must take a saturated lock to start
                # (or to report) waits like the service did, and would be counted twice too
                overhead = max(0.0, (r["finished"] - r["dispatched"]) - wall - lock_wait[k])
            out.setdefault(r["service"], []).append(
                Observed(alone[k], r["runner"], r["cpu_s"], r["gil_s"], overhead, wall))
        return out

    def background(self, runner: str, recent: int = RECENT_LOADS) -> list[float]:
        """Per run of ``runner`` on this machine (the last ``recent``, oldest first): the cores kept
        busy by everything but its services, on average from its first dispatch to its last end.
        Only runs whose every attempt measured its CPU seconds count: an attempt cancelled or lost
        in flight used CPU nobody measured, which would read as background."""
        db = self.open()._db
        try:  # the last ``recent`` loads, each with its run's attempts counted in the same query
            rows = db.execute(
                'SELECT l.start, l."end", l.busy_s, COUNT(a.id), COUNT(a.cpu_s), TOTAL(a.cpu_s) '
                "FROM (SELECT * FROM machine_load WHERE runner = ? ORDER BY recorded_at DESC LIMIT ?) l "
                "LEFT JOIN attempts a ON a.run_id = l.run_id GROUP BY l.run_id ORDER BY l.recorded_at",
                (runner, recent)).fetchall()
        except sqlite3.DatabaseError as exc:
            raise _not_ours(self.path, str(exc)) from None
        return [max(0.0, (busy - cpu) / (end - start))
                for start, end, busy, n, measured, cpu in rows if n and n == measured and end > start]

    def load_runners(self) -> list[str]:
        """The runners whose runs here recorded the machine's load, sorted."""
        try:
            return [r[0] for r in self.open()._db.execute("SELECT DISTINCT runner FROM machine_load ORDER BY runner")]
        except sqlite3.DatabaseError as exc:
            raise _not_ours(self.path, str(exc)) from None

    def runs(self) -> int:
        """How many distinct runs the store holds."""
        return self.open()._db.execute("SELECT COUNT(DISTINCT run_id) FROM attempts").fetchone()[0]


def _alone(rows: list[dict]) -> tuple[list[float], list[float]]:
    """Each row's time alone: its wall time less its measured wait for a CPU, and where services
    shared a process (threads, Dask; the rows with ``gil_s``) less its inferred wait for that
    process's interpreter lock, from the other attempts of its run in the same process. Beside
    it, the seconds of its runner overhead (dispatch to start, end to completion seen) during
    which that lock was saturated: waits for the lock too."""
    out = []
    for r in rows:
        wall = max(0.0, (r["end"] or 0.0) - (r["start"] or 0.0)) if r["start"] is not None else 0.0
        out.append(min(wall, max(0.0, wall - (r["cpu_wait_s"] or 0.0))))
    by_lock: dict[tuple[str, str | None], list[int]] = {}
    for k, r in enumerate(rows):
        # a row without its process (recorded before critpath kept it) is taken to share the run's
        # one lock: right on threads, the only runner that recorded gil_s then
        if r["gil_s"] is not None and r["start"] is not None and r["end"] is not None:
            by_lock.setdefault((r["run_id"], r["process"]), []).append(k)
    lock_wait = [0.0] * len(rows)
    for ks in by_lock.values():
        spans = [Span(rows[k]["start"], rows[k]["end"], rows[k]["gil_s"], rows[k]["cpu_wait_s"] or 0.0,
                      rows[k]["native_s"] or 0.0) for k in ks]
        found = destretch(spans, 1.0)
        for k, t in zip(ks, found.alone, strict=True):
            out[k] = t
        windows = found.windows
        for k in ks:
            r = rows[k]
            if windows and r["dispatched"] is not None and r["finished"] is not None:
                lock_wait[k] = (overlap(windows, min(r["dispatched"], r["start"]), r["start"])
                                + overlap(windows, r["end"], max(r["end"], r["finished"])))
    return out, lock_wait


def _q(column: str) -> str:
    return f'"{column}"'


class _transaction:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, *exc):
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
