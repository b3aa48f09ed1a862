"""Credentials for services, never shown.

A service asks ``secret("warehouse_password")``. The value comes from the
environment variable of that name (upper-cased), else from the Prefect Secret
block of that name. Every value handed out is remembered in the worker process,
and ``runners.base.execute`` replaces it with ``***`` in everything that leaves
the worker: captured log lines, the error message and the traceback. The run
report and the timeline are built from those, so they never hold a secret either.
From the first value on, every log record that process creates is masked too, so
its own console (the CLI's, on the threads runner) never prints one. Nothing is
masked, and nothing costs, until a secret has been handed out.
"""
from __future__ import annotations

import os

from runners.base import register_secret


def secret(name: str) -> str:
    value = os.environ.get(name.upper()) or os.environ.get(name)
    if value is None:
        try:
            from prefect.blocks.system import Secret

            value = Secret.load(name).get()
        except Exception as exc:  # say which secret, never its value
            raise LookupError(f"secret {name!r}: no environment variable {name.upper()!r} and no Prefect "
                              f"Secret block {name!r} ({type(exc).__name__}); set one of them") from None
    value = str(value)
    register_secret(value)
    return value
