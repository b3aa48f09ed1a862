"""Fixtures for every test: the named topologies (``tests.helpers.graphs``), each a fixture of
the same name, and the live-run fixtures (a real Prefect server, every runner).
"""
from __future__ import annotations

from typing import Callable

import pytest

from orchestrator.planning.graph import Graph
from tests.helpers.graphs import TOPOLOGIES


def _fixture(builder: Callable[[], Graph]):
    @pytest.fixture(name=builder.__name__)
    def make() -> Graph:
        return builder()

    make.__doc__ = builder.__doc__
    return make


for _name, _builder in TOPOLOGIES.items():
    globals()[f"{_name}_graph"] = _fixture(_builder)


@pytest.fixture
def topologies() -> dict[str, Callable[[], Graph]]:
    return TOPOLOGIES


# -- live runs: a real Prefect server and every runner -----------------------------------------
# Defined in their own modules (tests/prefect_fixtures.py, tests/runner_fixtures.py,
# tests/helpers/engines.py) and made visible here; importing them costs nothing until a test
# asks for one.
from tests.helpers.engines import engine, password  # noqa: F401
from tests.prefect_fixtures import prefect_server  # noqa: F401
from tests.runner_fixtures import runner_name  # noqa: F401


def pytest_configure(config):
    """The tests send SIGINT as a terminal's Ctrl-C does, to a foreground job, whose SIGINT is at
    its default. A test run started in the background by a non-interactive shell (``cmd &``, as a
    CI script or ``nohup`` may start it) inherits SIGINT *ignored*, and every process it starts
    would too: Python keeps an inherited ignore, so ``critpath serve`` never saw the Ctrl-C.
    Here (in pytest's process and in each xdist worker) SIGINT is Python's usual handler again,
    and the processes the tests start get it at its default."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(items):
    """Every test that needs ``prefect_server`` (directly or through a fixture) is a server test."""
    for item in items:
        if "prefect_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.server)


def pytest_sessionfinish(session, exitstatus):
    """Stop Prefect's temporary server (tests that run without an API URL start one) while
    pytest's streams are open: its own atexit hook logs to a closed stream otherwise."""
    import sys

    if "prefect.server.api.server" not in sys.modules:
        return
    from prefect.server.api.server import SubprocessASGIServer, subprocess_server_logger

    from orchestrator.flows.server import drain

    drain()
    # its "Stopping temporary server" line would go to the API being stopped, and fail
    subprocess_server_logger.disabled = True
    for server in list(SubprocessASGIServer._instances.values()):
        server.stop()
