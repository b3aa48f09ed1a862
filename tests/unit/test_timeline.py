"""The HTML timeline (``orchestrator.ui.timeline``), read back as data.

The page's SVG is parsed with ``xml.etree`` and bars are counted by class, never by
substring. ``report-sample.json`` is a 3-thread run of a 21-service ETL graph (* = critical path):

    *extract_orders -> *clean_orders -> *join_orders_customers -> *convert_currency -> *sales_facts
      '-> audit_log                  /                               /                  |
    extract_customers -> clean_customers      fx_rates_fetch (fails once, then ok)      |
                           '-> <script>alert(1)</script>                                 |
    extract_products -> clean_products -> enrich_products -------------------------------'
    extract_inventory ------------------'      '-> inventory_forecast (fails twice)
                                                     -> restock_alerts -> supplier_report (both skipped)
    *sales_facts -> *warehouse_load -> *daily_dashboard -> *email_digest
      '-> kundenübersicht – Umsätze 📈 ---'

``synthetic_report`` builds larger runs for scale.
"""
from __future__ import annotations

import json
import random
import re
import xml.etree.ElementTree as ET
from collections import Counter

import pytest

from orchestrator.ui import timeline
from orchestrator.ui.timeline import lane_labels, render_html, write_timeline
from tests.helpers.graphs import DATA

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = "<script>alert(1)</script>"


def sample() -> dict:
    return json.loads((DATA / "report-sample.json").read_text(encoding="utf-8"))


def svg_of(page: str) -> ET.Element:
    found = re.findall(r"<svg\b.*?</svg>", page, re.S)
    assert len(found) == 1, "the page holds exactly one SVG"
    return ET.fromstring(found[0])


def bars(svg: ET.Element) -> list[ET.Element]:
    return [r for r in svg.iter(f"{SVG}rect") if "bar" in r.get("class", "").split()]


def classes(el: ET.Element) -> set[str]:
    return set(el.get("class", "").split())


def name_of(bar: ET.Element) -> str:
    return bar.find(f"{SVG}title").text.split("\n")[0]


def lanes(svg: ET.Element) -> list[str]:
    return [t.text for t in svg.iter(f"{SVG}text") if "lane-label" in classes(t)]


def synthetic_report(n: int, workers: int, seed: int = 0) -> dict:
    """A plausible run: random DAG (each service after up to 3 of the 30 before it), list-scheduled
    on ``workers`` processes of one host; every 23rd service fails once, one fails for good (its
    descendants are skipped), and one attempt is lost with its worker."""
    rng = random.Random(seed)
    names = [f"svc_{i:04d}" for i in range(n)]
    deps = [rng.sample(range(max(0, i - 30), i), min(i, rng.choice((0, 1, 1, 2, 3)))) for i in range(n)]
    est = [round(rng.lognormvariate(0, 0.7), 3) for _ in range(n)]
    free = {f"node-7.cluster.example.org:{4100 + w}": 0.0 for w in range(workers)}
    t0, doomed, end, services = 1_700_000_000.0, n // 3, {}, {}
    for i, name in enumerate(names):
        upstream = next((services[names[d]].get("skipped_because") or names[d] for d in deps[i]
                         if services[names[d]]["state"] != "completed"), None)
        record = {"estimate_s": est[i], "priority_s": est[i], "lost_worker": False, "skipped_because": None}
        if upstream:
            services[name] = {**record, "state": "skipped", "start": None, "end": None, "attempts": 0,
                              "worker": None, "error": None, "skipped_because": upstream, "attempt_history": []}
            continue
        ready, history = max((end[d] for d in deps[i]), default=0.0), []
        tries = 2 if i == doomed or i % 23 == 7 else 1
        for k in range(tries):
            w = min(free, key=lambda w: (max(ready, free[w]), w))
            start = max(ready, free[w])
            finish = start + est[i] * (0.5 if k < tries - 1 else 1.0)
            lost = i == 11 and k == 0
            ok = k == tries - 1 and i != doomed
            free[w] = finish
            history.append({"attempt": k + 1, "start": t0 + start, "end": t0 + finish, "worker": None if lost else w,
                            "ok": ok, "error": None if ok else f"RuntimeError: attempt {k + 1} of {name}",
                            "lost": lost})
            ready = finish + 0.5
        end[i] = history[-1]["end"] - t0
        last = history[-1]
        services[name] = {**record, "state": "completed" if last["ok"] else "failed", "start": last["start"],
                          "end": last["end"], "attempts": tries, "worker": last["worker"], "error": last["error"],
                          "lost_worker": any(h["lost"] for h in history), "attempt_history": history}
    longest: dict[int, tuple[float, int | None]] = {}
    for i in range(n):
        prev = max(deps[i], key=lambda d: longest[d][0], default=None)
        longest[i] = (est[i] + (longest[prev][0] if prev is not None else 0.0), prev)
    i, path = max(longest, key=lambda i: longest[i][0]), []
    while i is not None:
        path.append(names[i])
        i = longest[i][1]
    makespan = max(end.values())
    lower = max(longest[names.index(path[0])][0], sum(est) / workers)
    return {"makespan_s": makespan, "critical_path": path[::-1], "critical_path_s": longest[names.index(path[0])][0],
            "total_work_s": sum(est), "lower_bound_s": lower, "simulated_makespan_s": lower * 1.1,
            "efficiency": lower / makespan, "max_concurrency": workers, "runner": "processes",
            "flow_run_id": None, "started_at": t0,
            "failed": sorted(k for k, s in services.items() if s["state"] == "failed"),
            "skipped": sorted(k for k, s in services.items() if s["state"] == "skipped"), "services": services}


def test_one_bar_per_attempt_classed_by_outcome():
    report = sample()
    found = Counter(c for b in bars(svg_of(render_html(report))) for c in classes(b) & {"ok", "retried", "failed"})
    history = [(s, k, h) for s in report["services"].values() for k, h in enumerate(s["attempt_history"])]
    assert sum(found.values()) == len(history) == 21
    assert found == {"ok": 18, "retried": 2, "failed": 1}  # fx_rates_fetch retried; inventory_forecast twice
    assert found["failed"] == len(report["failed"])


def test_critical_path_bars_are_marked_and_listed():
    report = sample()
    page = render_html(report)
    svg = svg_of(page)
    crit = {name_of(b) for b in bars(svg) if "crit" in classes(b)}
    assert crit == set(report["critical_path"])
    assert all("crit" not in classes(b) for b in bars(svg) if name_of(b) not in crit)
    listed = re.search(r'<ol class="path">(.*?)</ol>', page, re.S).group(1)
    assert re.findall(r"<code>(.*?)</code>", listed) == report["critical_path"]  # in path order


def test_lanes_are_the_workers_without_their_shared_host():
    report = sample()
    svg = svg_of(render_html(report))
    assert lanes(svg) == ["critpath_0", "critpath_1", "critpath_2"]
    # each bar sits inside the lane of the worker that ran it
    lane_rects = [r for r in svg.iter(f"{SVG}rect") if "lane" in classes(r)]
    spans = {r.find(f"{SVG}title").text: (float(r.get("y")), float(r.get("y")) + float(r.get("height")))
             for r in lane_rects}
    for b in bars(svg):
        worker = re.search(r"^worker (.*)$", b.find(f"{SVG}title").text, re.M).group(1)
        top, bottom = spans[worker]
        assert top <= float(b.get("y")) and float(b.get("y")) + float(b.get("height")) <= bottom


def test_untrusted_names_and_errors_are_escaped():
    report = sample()
    page = render_html(report)
    assert HOSTILE in report["services"]
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    svg = svg_of(page)
    assert HOSTILE in {name_of(b) for b in bars(svg)}  # escaped, yet the hover text reads it back whole
    assert "kundenübersicht – Umsätze 📈" in {name_of(b) for b in bars(svg)}
    assert "&quot;region = &#x27;EU&#x27;&quot;&gt;" in page  # the failed service's error, quotes and all


def test_characters_xml_cannot_carry_still_give_a_well_formed_page(tmp_path):
    report = sample()
    report["services"]["bell\x07 and \ud800 surrogate"] = dict(report["services"]["audit_log"])
    report["services"]["audit_log"]["error"] = "nul \x00 in error"
    page = render_html(report)
    assert len(bars(svg_of(page))) == 22
    assert "\ufffd" in page
    assert write_timeline(report, tmp_path / "t.html").read_text(encoding="utf-8") == page


@pytest.mark.parametrize("services", [{}, {"a": {"state": "skipped", "start": None, "end": None, "attempts": 0,
                                                   "worker": None, "error": None, "skipped_because": "up",
                                                   "attempt_history": []}}])
def test_empty_or_all_skipped_report_still_renders(services):
    report = {"makespan_s": 0.0, "critical_path": list(services), "critical_path_s": 0.0, "total_work_s": 0.0,
              "lower_bound_s": 0.0, "simulated_makespan_s": 0.0, "efficiency": None, "max_concurrency": 4,
              "runner": "threads", "flow_run_id": None, "started_at": None, "failed": [],
              "skipped": list(services), "services": services}
    page = render_html(report)
    svg = svg_of(page)
    assert bars(svg) == [] and lanes(svg) == []
    assert "no attempt ran" in page
    assert ("Skipped (1)" in page) == bool(services)


def test_attempts_without_a_worker_get_their_own_lane_and_never_overlap():
    report = sample()
    fx = report["services"]["fx_rates_fetch"]["attempt_history"]
    for h in fx:  # both attempts lost, overlapping in time
        h.update(worker=None, lost=True, start=fx[0]["start"], end=fx[0]["end"] + 1.0)
    svg = svg_of(render_html(report))
    assert lanes(svg)[-1] == timeline.NO_WORKER
    ys = {b.get("y") for b in bars(svg) if name_of(b) == "fx_rates_fetch"}
    assert len(ys) == 2  # stacked in two sub-rows, not drawn on top of each other


def test_lane_labels():
    assert lane_labels(["h:1/critpath_10", "h:1/critpath_2"]) == (
        {"h:1/critpath_10": "critpath_10", "h:1/critpath_2": "critpath_2"}, "h:1/")
    assert lane_labels(["a:1", "b:1"]) == ({"a:1": "a:1", "b:1": "b:1"}, "")  # different hosts stay
    assert lane_labels(["h:1/t"]) == ({"h:1/t": "t"}, "h:1/")  # never strips a label to nothing
    long = "h:1/" + "Dask-Default-Threads-" * 3 + "7"
    label = lane_labels([long, "h:1/x"])[0][long]
    assert len(label) == timeline.LABEL_MAX and label.endswith("-7") and "…" in label


def test_lanes_sort_naturally():
    report = synthetic_report(60, 12)
    labels = lanes(svg_of(render_html(report)))
    assert labels == [str(4100 + w) for w in range(12)] + [timeline.NO_WORKER]


def test_two_thousand_services_stay_compact():
    report = synthetic_report(2000, 16, seed=3)
    page = render_html(report)
    svg = svg_of(page)
    attempts = sum(len(s["attempt_history"]) for s in report["services"].values())
    drawn = bars(svg)
    assert len(drawn) == attempts > 1000
    labels = [t for t in svg.iter(f"{SVG}text") if "lbl" in classes(t)]
    assert len(labels) < len(drawn) / 10  # ~7 px a second: almost no bar is wide enough for a name
    assert len(page.encode()) < 1_500_000
    assert {name_of(b) for b in drawn if "crit" in classes(b)} == set(report["critical_path"])


def test_labels_fit_their_bars():
    svg = svg_of(render_html(synthetic_report(300, 8)))
    children = list(svg)
    labelled = [(children[k - 1], t) for k, t in enumerate(children) if "lbl" in classes(t)]
    assert labelled
    for bar, t in labelled:  # a label follows its bar
        assert "bar" in classes(bar) and float(t.get("x")) == pytest.approx(float(bar.get("x")) + 3, abs=0.11)
        assert len(t.text) * timeline.CHAR_W <= float(bar.get("width")) - 6
        assert t.text == name_of(bar) or (t.text.endswith("…") and name_of(bar).startswith(t.text[:-1]))


def test_rendering_is_deterministic():
    assert render_html(sample()) == render_html(sample())


def test_write_timeline_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "out" / "timeline.html"
    assert write_timeline(sample(), target) == target
    assert target.read_text(encoding="utf-8") == render_html(sample())
    assert [p.name for p in target.parent.iterdir()] == ["timeline.html"]

    def broken(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(timeline.os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        write_timeline(synthetic_report(20, 2), target)
    assert target.read_text(encoding="utf-8") == render_html(sample())  # the old page, whole
    assert [p.name for p in target.parent.iterdir()] == ["timeline.html"]  # no temp file left


def _cards(page: str) -> dict[str, tuple[str, str]]:
    """The stat cards: name -> (value, what it measures)."""
    found = re.findall(r'<div class="[^"]*" title="([^"]*)"><dt>([^<]*)</dt><dd>([^<]*)</dd></div>', page)
    return {name: (value, title) for title, name, value in found}


def test_planned_and_as_run_figures_are_named_for_what_they_measure():
    """A run stretched by contention: the plan said 10.3 s was possible, it took 52.3 s, and its
    services were packed tightly (the bound from their own durations is 52.3 s). The page shows
    both efficiencies, each labelled, and the prediction beside the makespan."""
    report = {**sample(), "makespan_s": 52.34, "lower_bound_s": 10.30, "critical_path_s": 10.30,
              "measured_lower_bound_s": 52.32, "measured_critical_path_s": 52.32, "efficiency": 52.32 / 52.34,
              "predicted_makespan_s": 50.0, "prediction_error": 52.34 / 50.0 - 1, "cores": 2}
    cards = _cards(render_html(report))
    assert cards["packing"][0] == "100%" and cards["packing"][1].startswith("as run")
    assert cards["planned efficiency"][0] == "20%" and "planned lower bound / makespan" in cards["planned efficiency"][1]
    assert cards["predicted makespan"][0].startswith("50.00 s (+5%)") and "2 cores" in cards["predicted makespan"][1]
    assert cards["planned lower bound"][0].startswith("10.30") and cards["lower bound as run"][0].startswith("52.32")
