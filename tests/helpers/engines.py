"""Engines shared by the refreshes of one test module, and the credential they start with.

``engine`` is an entered runner (``ENGINE_WORKERS`` slots: a thread pool, worker processes,
a Dask cluster, a Ray instance) started once per test module and shared by every refresh in
it; a test picks the runners with ``@pytest.mark.parametrize("engine", engines(...),
indirect=True)``. ``password`` puts a credential in the environment before the engine
starts, so that worker processes inherit it as they would a real one.

Both are made visible to every test module by tests/conftest.py (module scope: each module
gets its own engines).
"""
from __future__ import annotations

import os
import uuid

import pytest

ENGINE_WORKERS = 2
SECRET_NAME = "critpath_test_password"
SECRET_VAR = SECRET_NAME.upper()  # a CRITPATH_* name, as the refresh's own settings are

ENGINES = {
    "threads": pytest.param("threads", id="threads"),
    "processes": pytest.param("processes", id="processes"),
    "dask": pytest.param("dask", id="dask", marks=pytest.mark.dask),
    "ray": pytest.param("ray", id="ray", marks=pytest.mark.ray),
}


def engines(*names: str) -> list:
    """The parameters for ``names`` (Dask and Ray carry their markers)."""
    return [ENGINES[n] for n in names]


@pytest.fixture(scope="module")
def password():
    """A credential in the environment before any engine starts (workers copy it then)."""
    value = f"pw-{uuid.uuid4().hex}"
    before = os.environ.get(SECRET_VAR)
    os.environ[SECRET_VAR] = value
    try:
        yield value
    finally:
        if before is None:
            os.environ.pop(SECRET_VAR, None)
        else:
            os.environ[SECRET_VAR] = before


@pytest.fixture(scope="module")
def engine(request, password):
    """An entered runner (``ENGINE_WORKERS`` slots) that every refresh of the module shares."""
    from runners import make_runner

    with make_runner(request.param, ENGINE_WORKERS) as runner:
        yield runner
