"""The entry point's statuses: what click's standalone mode gave, except a Ctrl-C (issue 10 §7)."""
from __future__ import annotations

import click

from orchestrator.entry import _run


def _command(action):
    @click.command()
    @click.option("--n", type=int, default=0)
    def command(n):
        action(n)

    return command


def _interrupt(n):
    raise KeyboardInterrupt


def test_a_ctrl_c_no_command_caught_is_status_130_and_quiet(capsys):
    assert _run(_command(_interrupt), []) == 130
    assert "Aborted" not in capsys.readouterr().err


def test_a_usage_error_is_status_2_with_its_message(capsys):
    assert _run(_command(lambda n: None), ["--bogus"]) == 2
    assert "--bogus" in capsys.readouterr().err


def test_a_command_that_returns_is_status_0_and_an_explicit_exit_keeps_its_status():
    assert _run(_command(lambda n: None), ["--n", "3"]) == 0
    assert _run(_command(lambda n: click.get_current_context().exit(n)), ["--n", "3"]) == 3
    assert _run(_command(lambda n: None), ["--help"]) == 0


def test_an_abort_that_is_not_a_ctrl_c_is_still_status_1(capsys):
    def abort(n):
        raise click.Abort()

    assert _run(_command(abort), []) == 1
    assert "Aborted!" in capsys.readouterr().err
