"""The @service declarations of the refinery and the demo: complete, importable, acyclic, well-formed."""
from __future__ import annotations

import importlib
import inspect

import pytest

from orchestrator.planning.model import services_in
from services import demo, refinery


def _resolve(call: str):
    module, _, name = call.partition(":")
    obj = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _longest_chain(records) -> tuple[float, list[str]]:
    """The heaviest path by estimate; records must be in dependency order."""
    best: dict[str, tuple[float, list[str]]] = {}
    for r in records:
        before = max((best[a] for a in r.after), default=(0.0, []), key=lambda x: x[0])
        best[r.name] = (before[0] + r.est, before[1] + [r.name])
    return max(best.values(), key=lambda x: x[0])


@pytest.mark.parametrize("module", [refinery, demo], ids=["refinery", "demo"])
def test_every_service_is_declared_once_importable_and_listed_in_dependency_order(module):
    found = services_in(vars(module))
    names = [s.name for s in found]
    assert len(names) == len(set(names))
    if module is refinery:
        assert sorted(fn.__name__ for fn in refinery.SERVICES) == sorted(names)
        assert 20 <= len(found) <= 30
        found = [fn.__critpath__ for fn in refinery.SERVICES]
    seen = set()
    for s in found:
        assert set(s.after) <= seen, f"{s.name} comes before one of {s.after}"
        seen.add(s.name)
        assert s.pool is None or s.pool in module.POOLS
        assert s.tags and s.estimate and s.estimate > 0
        assert s.timeout is None or s.timeout > s.estimate
        fn = _resolve(s.call)
        assert fn.__critpath__ is s
        parameters = inspect.signature(fn).parameters.values()
        assert all(p.kind is p.KEYWORD_ONLY and p.default is not p.empty for p in parameters), s.name


def test_every_refinery_service_takes_the_three_knobs_and_uses_the_warehouse_pool():
    for fn in refinery.SERVICES:
        assert set(inspect.signature(fn).parameters) == {"warehouse", "scale", "fault"}, fn.__name__
        assert fn.__critpath__.pool == "warehouse"
        assert fn.__critpath__.call.startswith("services.refinery.")
    assert refinery.POOLS == {"warehouse": 4}


def test_publishing_waits_for_every_check_and_every_mart():
    checks = {fn.__name__ for fn in refinery.SERVICES if fn.__name__.startswith("check_")}
    built = {fn.__name__ for fn in refinery.SERVICES if fn.__name__.startswith("mart_")}
    for fn in (refinery.publish_snapshot, refinery.publish_summary_html):
        assert set(fn.__critpath__.after) == checks | built


def test_the_critical_path_runs_through_the_web_sessions():
    records = [fn.__critpath__ for fn in refinery.SERVICES]
    length, path = _longest_chain(records)
    assert path[:2] == ["ingest_web_events", "stage_sessions"]
    assert path[-1].startswith("publish_")
    # clearly longer than the longest chain that avoids the sessions
    without = [r for r in records if "web" not in r.tags and r.name != "check_freshness"]
    others = [r for r in without if set(r.after) <= {x.name for x in without}]
    assert length > 1.5 * _longest_chain(others)[0]


def test_demo_services_run_and_return_a_summary():
    for s in services_in(vars(demo)):
        assert _resolve(s.call)(speed=0) == {"service": s.name, "seconds": 0}
