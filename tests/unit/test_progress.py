"""``Progress``, what the user sees while a refresh runs, fed the dispatcher's events by hand.

The console is a ``rich`` Console writing to a StringIO. The plain lines (no live display:
CI, a pipe) are read from wherever Progress writes them, its console or stderr, and compared
without their elapsed-time prefix: nothing here depends on the clock.
"""
from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from orchestrator.execution.events import Event, ServiceRun
from orchestrator.ui.progress import Progress

PLAIN = re.compile(r"^\[\s*-?[\d.]+s (\d+/\d+)\] (.*)$")


def console(**options) -> Console:
    return Console(file=io.StringIO(), width=200, color_system=None, **options)


def written(progress: Progress, capsys) -> list[str]:
    """Every non-blank line Progress wrote so far, to its console or to stderr."""
    text = progress.console.file.getvalue() + capsys.readouterr().err
    return [line for line in text.splitlines() if line.strip()]


def plain_lines(progress: Progress, capsys) -> list[tuple[str, str]]:
    """(``done/total``, what) of each plain line; any other line fails the test."""
    out = []
    for line in written(progress, capsys):
        m = PLAIN.match(line)
        assert m, f"not a progress line: {line!r}"
        out.append(m.groups())
    return out


def run(name: str, **fields) -> ServiceRun:
    return ServiceRun(name, **fields)


#: a refresh of five services: a completes; b is lost once, retried, and fails; c is skipped
#: because of b; d is cancelled in flight; e never starts.
#: (event, service, its info, the counts after it: completed, running, failed, skipped)
EVENTS = [
    (Event.READY, run("a"), {}, (0, 0, 0, 0)),
    (Event.DISPATCH, run("a", attempts=1), {}, (0, 1, 0, 0)),
    (Event.DISPATCH, run("b", attempts=1), {}, (0, 2, 0, 0)),
    (Event.COMPLETE, run("a", attempts=1, start=10.0, end=11.25), {}, (1, 1, 0, 0)),
    (Event.RETRY, run("b", attempts=1, error="WorkerLost: gone"), {}, (1, 0, 0, 0)),
    (Event.READY, run("b", attempts=1), {}, (1, 0, 0, 0)),
    (Event.DISPATCH, run("b", attempts=2), {}, (1, 1, 0, 0)),
    (Event.FAIL, run("b", attempts=2, error="ValueError: bad row"), {}, (1, 0, 1, 0)),
    (Event.SKIP, run("c"), {"upstream": "b"}, (1, 0, 1, 1)),
    (Event.DISPATCH, run("d", attempts=1), {}, (1, 1, 1, 1)),
    (Event.CANCEL, run("d", attempts=1), {"reason": "SIGINT received"}, (1, 0, 1, 1)),
]


def feed(progress: Progress) -> None:
    for t, (kind, service, info, _) in enumerate(EVENTS):
        progress.on_event(kind, service, 1000.0 + t, **info)


def test_counts_follow_each_kind_of_event():
    progress = Progress(total=5, critical_path_s=3.0, console=console(), live=False)
    for t, (kind, service, info, counts) in enumerate(EVENTS):
        progress.on_event(kind, service, 1000.0 + t, **info)
        completed, running, failed, skipped = counts
        assert progress.counts == dict(completed=completed, running=running, failed=failed, skipped=skipped), \
            (kind, service.name)


def test_without_a_live_display_each_finished_service_prints_one_plain_line(capsys):
    """complete, retry, fail and skip print a line, in event order, counting what is settled;
    ready, dispatch and cancel print nothing."""
    progress = Progress(total=5, critical_path_s=3.0, console=console(), live=False)
    with progress:
        feed(progress)
    assert plain_lines(progress, capsys) == [
        ("1/5", "done     a 1.25 s"),
        ("1/5", "retrying b after attempt 1: WorkerLost: gone"),
        ("2/5", "FAILED   b: ValueError: bad row"),
        ("3/5", "skipped  c (upstream 'b' failed)"),
    ]


def test_a_service_without_worker_times_prints_no_duration(capsys):
    progress = Progress(total=1, critical_path_s=1.0, console=console(), live=False)
    progress.on_event(Event.DISPATCH, run("a", attempts=1), 1.0)
    progress.on_event(Event.COMPLETE, run("a", attempts=1), 2.0)
    assert plain_lines(progress, capsys) == [("1/1", "done     a ")]


def test_the_live_display_prints_no_plain_lines_and_ends_on_the_counts(capsys):
    progress = Progress(total=5, critical_path_s=3.0, console=console(), live=True)
    with progress:
        feed(progress)
    lines = written(progress, capsys)
    assert not [line for line in lines if PLAIN.match(line)]
    assert lines[-1].startswith("1 done  0 running  1 failed  1 skipped  2 waiting"), lines
    assert lines[-1].endswith("critical path 3.0 s"), lines


@pytest.mark.parametrize("options, live", [({}, False), ({"force_terminal": True}, True)],
                         ids=["pipe", "terminal"])
def test_live_only_on_a_terminal_unless_told(options, live):
    assert Progress(1, 1.0, console=console(**options)).live_mode is live
    assert Progress(1, 1.0, console=console(**options), live=not live).live_mode is (not live)
