"""critpath's signal handlers and Prefect's SIGTERM bridge, handed over in the main thread.

Prefect's flow engine installs a SIGTERM handler that raises ``TerminationSignal`` wherever
the main thread is. critpath takes SIGTERM back inside the flow run; a SIGTERM that landed
after the dispatcher ended (still inside the flow run) used to meet Prefect's handler again
and crash the flow run with a traceback instead of cancelling it (seen once in CI, as a
second SIGTERM that should have exited at once). Real Prefect code, no server: only
``capture_sigterm``, the context the flow engine wraps a flow run in, is used.
"""
from __future__ import annotations

import signal

import pytest
from prefect.utilities.engine import capture_sigterm

from orchestrator.execution.control import RunControl, cancel_on_signals


@pytest.fixture(autouse=True)
def _handlers_back():
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in before.items():
        signal.signal(sig, handler)


def test_a_sigterm_after_the_dispatcher_inside_the_flow_run_cancels_instead_of_crashing():
    control = RunControl()
    with cancel_on_signals(control) as outer:  # critpath run's own guard
        with capture_sigterm():  # the flow run: Prefect's bridge goes in
            with cancel_on_signals(control, keep=True):  # the dispatcher's part of the flow run
                pass
            signal.raise_signal(signal.SIGTERM)  # after the dispatcher, before the flow run ends
        assert outer.signal == signal.SIGTERM
    assert control.reason == "SIGTERM received"


def test_prefect_puts_back_critpaths_outer_handler_when_the_flow_run_ends():
    control = RunControl()
    guard = cancel_on_signals(control)
    with guard:
        with capture_sigterm():
            with cancel_on_signals(control, keep=True):
                pass
        assert signal.getsignal(signal.SIGTERM) == guard._handler


def test_without_a_signal_the_previous_handlers_come_back():
    before = signal.getsignal(signal.SIGTERM)
    with cancel_on_signals(RunControl()):
        assert signal.getsignal(signal.SIGTERM) != before
    assert signal.getsignal(signal.SIGTERM) == before


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_once_a_signal_came_the_handler_stays_so_a_second_one_exits_at_once(sig):
    """After the run's block, while the report is written, a second signal must still mean
    "exit at once" (os._exit), not a KeyboardInterrupt traceback or Prefect's crash."""
    control = RunControl()
    guard = cancel_on_signals(control)
    with guard:
        signal.raise_signal(sig)
    assert control.signal == sig
    assert signal.getsignal(signal.SIGINT) == guard._handler
    assert signal.getsignal(signal.SIGTERM) == guard._handler
