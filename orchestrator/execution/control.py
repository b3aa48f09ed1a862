"""Run control: cancelling a run from outside the dispatcher, and the signals that do it.

``RunControl`` carries a cancel request to the dispatcher from another thread or a
signal handler; a request made before the dispatcher exists is kept, and then nothing
is dispatched. ``cancel_on_signals`` turns SIGINT/SIGTERM into such a request.
``shielded_from_ctrl_c`` keeps a terminal's Ctrl-C away from the helper processes an
engine starts (worker processes, a local cluster), so that critpath, not they, decides
the order of shutdown. (critpath's temporary Prefect server runs in a session of its
own, out of reach of any signal to critpath's group: see ``flows.server``.)

A SIGTERM to the whole group (GNU ``timeout``, ``kill -- -PGID``) reaches those helper
processes too; the handler has cancelled the run by the time their end is seen, so the
services they ran end cancelled, not lost.
"""
from __future__ import annotations

import os
import signal
import threading


class RunControl:
    """Cancels a run from outside (the CLI's signal handlers): before the dispatcher
    exists the request is kept, and nothing will be dispatched."""

    def __init__(self):
        self.dispatcher = None
        self.reason: str | None = None
        self.signal: int | None = None
        self.handles_signals = False

    def attach(self, dispatcher) -> None:
        self.dispatcher = dispatcher
        if self.reason:
            dispatcher.cancel(self.reason)

    def cancel(self, reason: str) -> None:
        self.reason = self.reason or reason
        if self.dispatcher is not None:
            self.dispatcher.cancel(reason)


class cancel_on_signals:
    """SIGINT/SIGTERM cancel the run (in-flight work is cancelled on the engine and the
    flow run ends Cancelled), saying so on stderr at once; a second signal exits at once.
    Must be entered in the main thread.

    On exit the previous handlers come back, except when a signal has been received (the
    run is ending: a second signal exits at once wherever it lands, never as a traceback)
    or ``keep`` is set. ``keep`` is for the guard inside a flow run: the handler it
    replaces is Prefect's, which raises ``TerminationSignal`` wherever the main thread is,
    so a SIGTERM between the dispatcher's end and the flow run's end would crash the
    flow run instead of cancelling it. Prefect puts back the handler it found (critpath's
    outer one) when the flow run ends."""

    def __init__(self, control: RunControl, keep: bool = False):
        self.control = control
        self.keep = keep
        self.previous: dict = {}

    def _handler(self, signum, frame):
        if self.control.signal is not None:  # second Ctrl-C: stop now
            os._exit(128 + signum)
        self.control.signal = signum
        name = signal.Signals(signum).name
        again = "press Ctrl-C" if signum == signal.SIGINT else f"send {name}"
        try:  # os.write, not print: a handler may interrupt a print to the same stream
            os.write(2, f"critpath: {name} received, cancelling the run; {again} again to exit at once\n".encode())
        except OSError:  # no stderr to write to: cancel all the same
            pass
        self.control.cancel(f"{name} received")

    def __enter__(self):
        self.control.handles_signals = True
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handler)
        return self.control

    def __exit__(self, *exc):
        if self.keep or self.control.signal is not None:
            return
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


class shielded_from_ctrl_c:
    """Processes started inside this block (worker processes, a local cluster)
    inherit a blocked SIGINT, so a terminal's Ctrl-C, which reaches the whole
    foreground process group, stops only critpath, which then cancels the run and
    shuts them down in order."""

    def __enter__(self):
        self.active = threading.current_thread() is threading.main_thread()
        if self.active:
            self.previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        return self

    def __exit__(self, *exc):
        if self.active:
            signal.pthread_sigmask(signal.SIG_SETMASK, self.previous)
