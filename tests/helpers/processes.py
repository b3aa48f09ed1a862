"""Driving real processes from a test: ``critpath`` in a session of its own, signals, pids.

Every wait here is bounded and only keeps a test from hanging; none of them is an
assertion on how long something took. The one polling loop (``wait_until``) watches
files that another process writes, for which there is no event to block on.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import psutil

ROOT = Path(__file__).resolve().parents[2]


def wait_until(predicate: Callable[[], object], timeout: float, what: str):
    """The first truthy value of ``predicate()``; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {timeout:g} s for {what}")
        time.sleep(0.02)


def read_pid(path: Path, timeout: float = 120.0) -> int:
    """The pid a service body wrote to ``path`` (``tests.helpers.faults``), once it is there."""
    return int(wait_until(lambda: path.exists() and path.read_text(), timeout, f"a pid in {path}"))


def gone(pid: int) -> bool:
    """The process no longer runs (a zombie waiting for its parent to reap it counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# A local ``ray.init()`` in this test process sets RAY_AUTH_MODE=token in os.environ for good
# (Ray 2.60); a critpath started later must not inherit it, or it would ask a cluster started
# without token authentication for a token. The value this process started with is kept.
_RAY_AUTH_MODE_AT_START = os.environ.get("RAY_AUTH_MODE")


def cli_env(api_url: str | None, **extra: str) -> dict:
    """The environment of a ``critpath`` subprocess: this repository importable, no colours,
    Prefect at ``api_url`` (None: no PREFECT_API_URL, so Prefect starts its temporary server)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    env.pop("RAY_AUTH_MODE", None)
    if _RAY_AUTH_MODE_AT_START is not None:
        env["RAY_AUTH_MODE"] = _RAY_AUTH_MODE_AT_START
    env.update(extra)
    env.pop("PREFECT_API_URL", None)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def critpath(*args: str, cwd, api_url: str | None = None, timeout: float = 180, **env: str):
    """``python -m orchestrator ARGS`` run to completion; the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=cli_env(api_url, **env))


def assert_bad_input(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """``proc`` (a finished ``critpath``) ended as bad input must: exit status 2, no traceback,
    one ``critpath: error: `` line first on stderr, and every one of ``needles`` in stderr."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines and lines[0].startswith("critpath: error: "), proc.stderr
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)


class Cli:
    """``python -m orchestrator ARGS`` started in a new session (its own process group, as a
    terminal's foreground job is), its output collected by two reader threads so that a
    test can wait for a line while the process runs and signal it meanwhile."""

    def __init__(self, *args: str, cwd, api_url: str | None, **env: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "orchestrator", *args], cwd=cwd, text=True,
                                     env=cli_env(api_url, **env), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        self.out: list[str] = []
        self.err: list[str] = []
        self._new_line = threading.Condition()
        self._readers = [threading.Thread(target=self._read, args=(stream, lines), daemon=True)
                         for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for t in self._readers:
            t.start()

    def _read(self, stream, lines: list[str]) -> None:
        for line in stream:
            with self._new_line:
                lines.append(line)
                self._new_line.notify_all()

    @property
    def stdout(self) -> str:
        return "".join(self.out)

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    def wait_for_output(self, needle: str, timeout: float = 120.0) -> None:
        """Blocks until a line of stdout or stderr contains ``needle``."""
        with self._new_line:
            if not self._new_line.wait_for(lambda: needle in self.stdout + self.stderr, timeout):
                raise AssertionError(f"no {needle!r} in the output after {timeout:g} s:\n"
                                     f"{self.stdout}\n{self.stderr}")

    def signal_group(self, sig: int) -> bool:
        """``sig`` to the whole process group (a terminal's Ctrl-C); False if it is gone."""
        try:
            os.killpg(self.proc.pid, sig)
            return True
        except ProcessLookupError:
            return False

    def wait(self, timeout: float) -> int | None:
        """The exit status, or None if the process still runs after ``timeout`` s."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        for t in self._readers:
            t.join(10)
        return code

    def kill(self) -> None:
        """SIGKILL to the process group, the CLI and every worker it started; waits for the CLI."""
        self.signal_group(signal.SIGKILL)
        self.proc.wait(30)
        for t in self._readers:
            t.join(10)

    def __enter__(self) -> "Cli":
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:  # a failed test must not leave a refresh running
            self.kill()
