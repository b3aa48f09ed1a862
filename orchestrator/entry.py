"""The ``critpath`` command's entry point, kept tiny on purpose.

A Ctrl-C (or SIGTERM) that arrives while Python is still importing click, rich and the
orchestrator would print a ``KeyboardInterrupt`` traceback from some import. So a Ctrl-C
that no command handled ends the process quietly with status 130, and a SIGTERM during the
imports with 143; once the commands are loaded, SIGTERM is back to its default, and a
command that runs something installs its own handlers (``execution.control``). Ctrl-C stays
a ``KeyboardInterrupt`` so that commands which catch it (``serve`` stopping its child) still do.
"""
from __future__ import annotations

import signal
import sys


def _quiet(signum, frame):
    sys.exit(128 + signum)


def main() -> None:
    try:
        signal.signal(signal.SIGTERM, _quiet)
        from .ui.cli import main as cli

        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        cli()
    except KeyboardInterrupt:
        sys.exit(130)
