"""Ctrl-C or SIGTERM while ``critpath`` is still importing: exit 130 or 143, never a traceback
(issue 10 §7). The signal is sent at several moments of the first fraction of a second."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from tests.helpers.processes import cli_env


def _only_pythons_own_frames(err: str) -> bool:
    """A KeyboardInterrupt traceback whose every frame is Python's frozen start-up machinery."""
    frames = [ln for ln in err.splitlines() if ln.lstrip().startswith("File ")]
    return (err.startswith("Traceback") and err.rstrip().endswith("KeyboardInterrupt") and bool(frames)
            and all(ln.lstrip().startswith('File "<frozen ') for ln in frames))


def _after_site_report(err: str) -> str:
    """``err`` less the report of Python's ``site`` module, when the signal came while it ran a
    ``.pth`` file (the editable install's finder is one): a KeyboardInterrupt there can surface as
    another exception (a ``RuntimeError`` from ``__set_name__``), which ``site`` prints, before it
    goes on starting the interpreter. What follows that report is critpath's, and is checked."""
    head, sep, rest = err.partition("\nRemainder of file ignored\n")
    if err.startswith("Error processing line ") and sep and "KeyboardInterrupt" in head:
        return rest
    return err


def test_the_start_up_exception_is_narrow():
    own = ('Traceback (most recent call last):\n  File "<frozen runpy>", line 189, in _run_module_as_main\n'
           '  File "<frozen runpy>", line 112, in _get_module_details\nKeyboardInterrupt\n')
    assert _only_pythons_own_frames(own)
    ours = own.replace('  File "<frozen runpy>", line 112', '  File "/x/orchestrator/entry.py", line 3')
    assert not _only_pythons_own_frames(ours)
    site = ("Error processing line 1 of /v/__editable__.critpath-0.1.0.pth:\n\n  Traceback (most recent call last):\n"
            "  KeyboardInterrupt\n  RuntimeError: Error calling __set_name__\n\nRemainder of file ignored\n")
    assert _after_site_report(site + "critpath: error: x\n") == "critpath: error: x\n"
    assert _after_site_report(site.replace("KeyboardInterrupt", "ValueError")) != ""  # only a signal's report


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("after", [0.02, 0.05, 0.1, 0.15, 0.3])
def test_a_signal_during_start_up_is_a_quiet_exit(tmp_path, sig, status, after):
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "plan", "--graph", "missing.json"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(None))
    time.sleep(after)  # when to send the signal, not an assertion on time
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    err = _after_site_report(err)
    if err.startswith("Fatal Python error: init_import_site") or _only_pythons_own_frames(err):
        # the signal came while the interpreter itself was starting (its site module, or runpy
        # finding ``orchestrator.__main__``), before any line of critpath ran: Python's own
        # report, which no program can prevent
        return
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    # the command may have finished first (a one-line error, status 2), or the signal may have come
    # before Python installed any handler (killed by it, which prints nothing); otherwise its status
    assert proc.returncode in (status, 2, -sig), (proc.returncode, err)
