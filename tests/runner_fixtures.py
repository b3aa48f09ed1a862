"""Runner parametrization for the contract suite: the same tests on every runner.

``runner_name`` is module-scoped, so a test module's expensive refresh (one Prefect flow
run, and for Dask and Ray a cluster started inside ``run()``) happens once per runner and
every small test of that module asserts on its report. Dask and Ray tests carry the
``dask`` / ``ray`` markers (``-m "not dask and not ray"`` for a quick run).

Worker processes import ``tests.helpers.services`` through the runners' own path
propagation (each gives its workers the driver's project folders): nothing is set up here,
so a runner that stops doing it fails these tests.
"""
from __future__ import annotations

import pytest

RUNNER_PARAMS = [
    pytest.param("threads", id="threads"),
    pytest.param("processes", id="processes"),
    pytest.param("dask", id="dask", marks=pytest.mark.dask),
    pytest.param("ray", id="ray", marks=pytest.mark.ray),
]


@pytest.fixture(scope="module", params=RUNNER_PARAMS)
def runner_name(request) -> str:
    return request.param

