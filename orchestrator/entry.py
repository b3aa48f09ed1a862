"""The ``critpath`` command's entry point, kept tiny on purpose.

A Ctrl-C (or SIGTERM) that arrives while Python is still importing click, rich and the
orchestrator would print a ``KeyboardInterrupt`` traceback from some import. So a Ctrl-C or a
SIGTERM during the imports ends the process at once, quietly, with status 130 or 143, and a
Ctrl-C that no command handled later ends it with 130; once the commands are loaded, SIGTERM is
back to its default, and a command that runs something installs its own handlers
(``execution.control``). Ctrl-C is a ``KeyboardInterrupt`` again then, so that commands which
catch it (``serve`` stopping its child) still do.

click itself is run outside its standalone mode: standalone, it turns a Ctrl-C that no command
caught into "Aborted!" and status 1, which a script cannot tell from a failure (seen in CI when
the signal came just as ``plan`` started).
"""
from __future__ import annotations

import os
import signal
import sys


def _quiet(signum, frame):
    # Nothing has been done yet, so the process ends here and now. An exception raised from here
    # (SystemExit, KeyboardInterrupt) can surface as another one: Python 3.11 wraps whatever a
    # class attribute's ``__set_name__`` raises, as a dataclass field's does, in a RuntimeError,
    # which no ``except`` below would take for a signal (seen in CI: a traceback, not status 143).
    os._exit(128 + signum)


def main() -> None:
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for sig, handler in previous.items():
            if handler is not signal.SIG_IGN:  # an ignored signal stays ignored
                signal.signal(sig, _quiet)
        from .ui.cli import main as cli

        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if previous[signal.SIGINT] is not signal.SIG_IGN:
            signal.signal(signal.SIGINT, previous[signal.SIGINT])  # Ctrl-C is a KeyboardInterrupt again
        sys.exit(_run(cli))
    except KeyboardInterrupt:
        sys.exit(130)


def _run(cli, args: list[str] | None = None) -> int:
    """What click's standalone mode does, except that a Ctrl-C is status 130, quietly."""
    import click

    try:
        code = cli.main(args, standalone_mode=False)
    except click.Abort as abort:
        if isinstance(abort.__cause__, KeyboardInterrupt):
            return 130
        click.echo("Aborted!", err=True)
        return 1
    except click.ClickException as e:
        e.show()
        return e.exit_code
    # an explicit exit (``--help``, ``ctx.exit(n)``) comes back as its status; a command's own
    # return value is not a status
    return code if isinstance(code, int) and not isinstance(code, bool) else 0
