"""The ``critpath`` command's entry point, kept tiny on purpose.

A Ctrl-C (or SIGTERM) that arrives while Python is still importing click, rich and the
orchestrator would print a ``KeyboardInterrupt`` traceback from some import. So a Ctrl-C
that no command handled ends the process quietly with status 130, and a SIGTERM during the
imports with 143; once the commands are loaded, SIGTERM is back to its default, and a
command that runs something installs its own handlers (``execution.control``). Ctrl-C stays
a ``KeyboardInterrupt`` so that commands which catch it (``serve`` stopping its child) still do.

click itself is run outside its standalone mode: standalone, it turns a Ctrl-C that no command
caught into "Aborted!" and status 1, which a script cannot tell from a failure (seen in CI when
the signal came just as ``plan`` started).
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
