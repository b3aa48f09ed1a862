"""Choosing and starting a runner: the one place that names the runners to a user.

``check_runner`` refuses an unknown name before anything starts; ``started`` enters
the runner and turns whatever its engine raises on start-up (an address nobody
answers, a cluster that refuses us) into one line of bad input. Once the engine runs,
a ``Reaper`` ends what it started if critpath dies before shutting it down.
"""
from __future__ import annotations

from runners import RUNNERS, RunnerSetupError, make_runner

from ..planning.errors import CritpathError, did_you_mean
from .control import shielded_from_ctrl_c
from .reaper import Reaper


def check_runner(name: str) -> None:
    if name not in RUNNERS:
        raise CritpathError(f"unknown runner {name!r}{did_you_mean(name, RUNNERS)}; "
                            f"choose one of: {', '.join(RUNNERS)}")


class started:
    """The named runner, entered; engine start-up failures become one-line errors."""

    def __init__(self, name: str, workers: int, address: str | None, code=None):
        check_runner(name)
        self.name, self.address = name, address
        self.reaper: Reaper | None = None
        try:  # code: the service code a cluster runner ships (execution.shipping.code_for)
            self.runner = make_runner(name, workers, address, code)
        except RunnerSetupError as exc:
            raise CritpathError(str(exc)) from None

    def __enter__(self):
        try:
            with shielded_from_ctrl_c():
                runner = self.runner.__enter__()
        except CritpathError:
            raise
        except RunnerSetupError as exc:
            raise CritpathError(str(exc)) from None
        except Exception as exc:
            where = f" at {self.address!r}" if self.address else ""
            raise CritpathError(f"could not start the {self.name} runner{where}: {type(exc).__name__}: "
                                f"{str(exc).splitlines()[0] if str(exc) else ''}; check that the "
                                f"cluster is running and the address is right") from None
        self.reaper = Reaper()
        return runner

    def __exit__(self, *exc):
        try:
            return self.runner.__exit__(*exc)
        finally:
            if self.reaper is not None:
                self.reaper.done()
