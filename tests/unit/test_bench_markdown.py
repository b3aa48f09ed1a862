"""The README's Performance tables are rendered from a bench JSON: misses must show."""
from __future__ import annotations

from benchmarks.markdown import render

META = {"argv": ["bench", "--json", "out/b.json"], "started_at": "2026-11-22T06:12:00", "wall_s": 600, "cores": 2,
        "load_before": [0.5, 0.5, 0.5], "versions": {"prefect": "3.8.8", "distributed": "2026.8.0", "ray": "2.60.0"}}


def eff(runner, case, achieved_over_sim, sim_over_best=1.0):
    return {"runner": runner, "case": case, "concurrency": 4, "simulated_over_best": sim_over_best,
            "simulated_s": 3.0 * sim_over_best, "bound_s": 3.0, "simulated_target_met": sim_over_best <= 1.05,
            "achieved_over_simulated": achieved_over_sim, "achieved_over_best": achieved_over_sim * sim_over_best,
            "achieved_over_bound": achieved_over_sim * sim_over_best, "native_over_best": None,
            "raw_over_best": 1.4, "target_met": achieved_over_sim <= 1.05}


def test_every_missed_case_is_named_and_worst_ratios_are_shown():
    doc = {"meta": META, "results": {"efficiency": [eff("dask", "chain", 1.02), eff("dask", "pools", 1.2, 1.1),
                                                    eff("ray", "chain", 1.01)]}, "broken": []}
    text = render(doc)
    assert "critpath bench --json out/b.json" in text
    assert "| dask | 2 | 1.110 / 1.200 |" in text  # median / worst of achieved / sim
    assert "- pools @ 4: sim / best 1.100" in text
    assert "- pools @ 4 on dask: achieved / sim 1.200" in text
    assert "chain @ 4 on" not in text  # met cases are not listed


def test_a_broken_invariant_is_printed():
    doc = {"meta": META, "results": {}, "broken": ["efficiency on ray: 2.0 x best"]}
    assert "Broken invariants: efficiency on ray: 2.0 x best" in render(doc)
