"""The ``critpath`` command's entry point, kept tiny on purpose.

A Ctrl-C (or SIGTERM) that arrives while Python is still importing click, rich and the
orchestrator would print a ``KeyboardInterrupt`` traceback from some import. So the very
first thing is a handler that ends the process quietly with the usual status (130 or
143); a command that runs something installs its own handlers later (``execution.control``).
"""
from __future__ import annotations

import signal
import sys


def _quiet(signum, frame):
    sys.exit(128 + signum)


def main() -> None:
    signal.signal(signal.SIGINT, _quiet)
    signal.signal(signal.SIGTERM, _quiet)
    from .ui.cli import main as cli

    cli()
