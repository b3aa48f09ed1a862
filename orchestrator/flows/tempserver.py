"""The process of critpath's temporary Prefect server (``python -m orchestrator.flows.tempserver
FD PARENT_PID``), started and stopped by ``server.TemporaryServer``.

It serves exactly what Prefect's own temporary server serves (the app, log level and lifespan
of ``prefect.server.api.server.SubprocessASGIServer``; the caller sets the same environment) on
the listening socket FD that critpath bound on 127.0.0.1 (so the address is known before the
server answers, and no other process can take the port meanwhile). Its life follows the
critpath process that started it, not the signals that reach it:

* its standard input is a pipe whose other end only critpath holds: end of file (critpath
  stopped it, or died however it died) shuts the server down gracefully, and ends the
  process outright if that takes longer than ``EXIT_GRACE_S``;
* on Linux, the kernel sends it SIGHUP (a graceful stop, as above) when the thread that
  started it ends, even if a process critpath forked still holds the pipe;
* a SIGTERM is *deferred*: it means "stop" to the whole control group under systemd, but the
  server must outlive critpath's own handling of that SIGTERM (recording the flow run as
  Cancelled). The server then stops when critpath lets go of it, or after ``DEFER_S``.
"""
from __future__ import annotations

import os
import signal
import socket
import sys
import threading

#: after critpath let go, a graceful shutdown that takes longer than this ends the process
EXIT_GRACE_S = 10.0
#: a SIGTERM ends the server this long after it came, if critpath has not let go by then
DEFER_S = 30.0
#: what the kernel sends when the thread that started this process ends (Linux)
PARENT_DIED = signal.SIGHUP


class _Life:
    """How the server ends: ``stop()`` (from a thread or a signal handler) asks uvicorn to
    shut down gracefully, or ends the process at once while the app is still loading; a
    timer ends it outright ``EXIT_GRACE_S`` later. No signal is raised for it: uvicorn
    re-raises the signals it handled once it has stopped, and a SIGINT then surfaces as
    tracebacks on the way out."""

    def __init__(self):
        self.server = None
        self.stopping = False
        self.deferred = False

    def stop(self, *_) -> None:
        if self.stopping:
            return
        self.stopping = True
        if self.server is None:  # still importing the app: nothing to shut down
            os._exit(0)
        self.server.should_exit = True
        timer = threading.Timer(EXIT_GRACE_S, os._exit, args=(1,))
        timer.daemon = True
        timer.start()

    def defer(self, *_) -> None:
        if not self.deferred:
            self.deferred = True
            timer = threading.Timer(DEFER_S, self.stop)
            timer.daemon = True
            timer.start()

    def watch_parent(self) -> None:
        """Blocks until critpath's end of the pipe is closed, then stops the server."""
        while True:
            try:
                if not os.read(0, 4096):
                    break
            except InterruptedError:
                continue
            except OSError:
                break
        self.stop()


def _tie_to_parent(parent: int) -> None:
    """``PARENT_DIED`` when the starting thread ends (Linux); exit now if it already has."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, PARENT_DIED)
    if os.getppid() != parent:  # died before the line above took effect
        sys.exit(1)


def main(fd: int, parent: int) -> None:
    life = _Life()
    # whatever the parent blocked (critpath shields its children from Ctrl-C): the signals
    # below must arrive
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM, PARENT_DIED})
    signal.signal(PARENT_DIED, life.stop)
    signal.signal(signal.SIGTERM, life.defer)
    _tie_to_parent(parent)
    threading.Thread(target=life.watch_parent, name="critpath-parent-watch", daemon=True).start()

    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            if sig == signal.SIGTERM:
                return life.defer()
            return super().handle_exit(sig, frame)

    sock = socket.socket(fileno=fd)
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config("prefect.server.api.server:create_app", factory=True, host=host, port=port,
                            log_level="error", lifespan="on")
    config.load_app()
    server = Server(config)
    life.server = server
    if life.stopping:  # asked to stop while the app loaded
        sys.exit(0)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # a SIGINT sent to it by hand: uvicorn stopped, then re-raised it
        pass
    sys.exit(0 if server.started else 1)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
