"""Fixtures for ``pytest benchmarks/``: the same measures as ``critpath bench``.

    pytest benchmarks/ --benchmark-save=NAME          # full set, JSON under .benchmarks/
    pytest benchmarks/ --bench-quick                  # the CI subset
    pytest benchmarks/ --benchmark-compare            # against the last saved run
    pytest benchmarks/ -m "not ray" -k overhead       # a part

``engine`` is session-scoped and parametrized indirectly with (runner, slots), so
pytest groups every test of one engine together and starts each engine once
(Ray allows one instance per process: the 8-slot and 64-slot Ray engines are
never up at the same time). One ``prefect server start`` serves the session.
pytest-benchmark times critpath's ``run()`` calls (``target``); the baselines run
after each round (``teardown``), untimed by pytest-benchmark but timed by the
measure, and every number and ratio goes to ``extra_info``.
"""
from __future__ import annotations

import pytest

from benchmarks.measures import Engine, Settings

RUNNERS = ("threads", "processes", "dask", "ray")


def pytest_addoption(parser):
    group = parser.getgroup("critpath bench")
    group.addoption("--bench-quick", action="store_true", default=False,
                    help="Run the quick subset (what `critpath bench --quick` runs).")


def bench_settings(config) -> Settings:
    return Settings.quick_set() if config.getoption("--bench-quick") else Settings()


def engine_params(slots: int = 8) -> list:
    marks = {"dask": [pytest.mark.dask], "ray": [pytest.mark.ray]}
    return [pytest.param((name, slots), id=f"{name}-{slots}", marks=marks.get(name, [])) for name in RUNNERS]


def pytest_generate_tests(metafunc):
    if "eff_case" in metafunc.fixturenames:
        s = bench_settings(metafunc.config)
        from benchmarks.graphs import FAMILIES, trace_cases

        names = list(FAMILIES) + list(trace_cases())
        pairs = s.cases or [(n, c) for n in names for c in s.concurrencies]
        metafunc.parametrize("eff_case", pairs, ids=[f"{n}@{c}" for n, c in pairs])


@pytest.fixture(scope="session")
def settings(request) -> Settings:
    return bench_settings(request.config)


@pytest.fixture(scope="session")
def bench_server(settings):
    import os

    from benchmarks.server import bench_environment

    with bench_environment() as server:
        if settings.refresh_scale is not None:
            os.environ["CRITPATH_SCALE"] = str(settings.refresh_scale)
        yield server


@pytest.fixture(scope="session")
def engine(request, bench_server):
    from orchestrator.execution.engines import started

    name, slots = request.param
    with started(name, slots, None) as runner:
        e = Engine(runner, bench_server)
        try:
            e.warm_up()
            yield e
        finally:
            e.close()


@pytest.fixture(scope="session")
def solved_cases(settings):
    """Every efficiency case, solved once before its first test (no engine is busy then)."""
    from benchmarks.measures import efficiency_cases

    pytest.importorskip("ortools", reason="the best-known column needs ortools: pip install -e '.[bench]'")
    cases = {(c.name, c.concurrency): c for c in efficiency_cases(settings)}
    for c in cases.values():
        c.solve(settings.solver_time_limit_s)
    return cases
