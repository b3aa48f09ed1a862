"""An HTML timeline of one run: a Gantt chart of every attempt, one lane per worker.

``render_html(report)`` turns a run report (``report.build_report``) into one
self-contained page: inline CSS and one inline SVG, no script, nothing fetched,
and nothing that is not in the report. ``write_timeline`` writes it atomically.

Design:
- Lanes are workers. Runner worker names look like ``host:pid/thread`` or
  ``host:pid``; the longest prefix (cut after a ``:`` or ``/``) that every worker
  shares is dropped from the lane labels and printed once above the chart, so
  the threads of one process read ``critpath_0``, ``critpath_1``. Lanes sort
  naturally (``_2`` before ``_10``). Attempts without a worker (timeouts and
  lost workers, timed by the dispatcher) get a last lane of their own.
- A worker runs one attempt at a time, but the no-worker lane does not, so any
  lane whose attempts overlap grows sub-rows (greedy interval packing) rather
  than letting one bar hide another.
- Bars are ``rect``s classed by outcome: ``ok``, ``retried`` (failed, then tried
  again) or ``failed`` (the last attempt of a service that failed), plus ``crit``
  for services on the planned critical path; tests count them by class. A thin
  line joins the critical path's bars in order, so its waits show as gaps.
- Time is seconds from the earliest attempt start (worker clocks), not the
  report's ``started_at`` (dispatcher clock), so no bar starts before zero.
- Size: ~2,000 bars must stay a few hundred kB, so each bar is one ``rect`` with
  its hover ``title``, and a name is drawn inside a bar only where it fits at a
  known monospace advance (shortened with an ellipsis down to six characters).
- Every string from the report is untrusted: it is HTML-escaped, and characters
  XML cannot carry (controls, lone surrogates from JSON) become U+FFFD, so the
  SVG is well-formed XML and the page always encodes as UTF-8.
"""
from __future__ import annotations

import html
import math
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import pairwise
from pathlib import Path

from ..support.files import write_text

PLOT_W = 1000  # px of time axis: fixed, so text stays legible however long the run
ROW_H = 22  # px per sub-row
LANE_PAD = 3  # px above and below a lane's sub-rows
CHAR_W = 6.7  # advance of 11 px monospace, to decide whether a label fits
LABEL_MAX = 30  # lane label characters before middle-ellipsis
ERROR_MAX = 1500  # characters of an error shown in the lists; the report has it all
NO_WORKER = "(no worker)"
COLOURS = {"ok": "#86c48a", "retried": "#f0b64b", "failed": "#e0605a", "crit": "#3a2a8c"}
#: vertical lines for the run's deadline and the finish projected at its start (report "deadline")
MARKS = {"deadline": ("#c0262d", "deadline"), "predicted": ("#5566aa", "predicted finish at the start")}
#: a mark further than this many times the run's own span past its end is named at the edge, not drawn
MARK_REACH = 3.0

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True)
class _Bar:
    name: str
    attempt: int
    attempts: int
    start: float
    end: float
    worker: str | None
    kind: str  # ok | retried | failed
    crit: bool
    error: str | None
    lost: bool


def _esc(value) -> str:
    return html.escape(_NOT_XML.sub("\ufffd", str(value)), quote=True)


def _num(x) -> float | None:
    ok = isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
    return float(x) if ok else None


def _secs(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{x:,.{digits}f} s"


def _natural(s: str) -> tuple:
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", s))


def _clip(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n // 2 - 1] + "…" + s[-(n - n // 2):]


def _bars(report: dict) -> list[_Bar]:
    crit = set(report.get("critical_path") or ())
    bars = []
    for name, svc in (report.get("services") or {}).items():
        history = svc.get("attempt_history") or []
        if not history and _num(svc.get("start")) is not None and _num(svc.get("end")) is not None:
            # a report without history still knows its last attempt
            history = [{"attempt": svc.get("attempts") or 1, "start": svc["start"], "end": svc["end"],
                        "worker": svc.get("worker"), "ok": svc.get("state") == "completed",
                        "error": svc.get("error")}]
        for k, h in enumerate(history):
            start, end = _num(h.get("start")), _num(h.get("end"))
            if start is None or end is None:
                continue
            kind = "ok" if h.get("ok") else ("retried" if k < len(history) - 1 else "failed")
            worker = None if h.get("worker") is None else str(h["worker"])
            bars.append(_Bar(str(name), int(h.get("attempt") or k + 1), len(history), start, max(start, end),
                             worker, kind, name in crit, h.get("error"), bool(h.get("lost"))))
    return bars


def lane_labels(workers: list[str]) -> tuple[dict[str, str], str]:
    """Short label per worker, and the prefix all of them shared (dropped from the labels)."""
    parts = [re.split(r"(?<=[:/])", w) for w in workers]
    common = 0
    while parts and all(len(p) > common + 1 and p[common] == parts[0][common] for p in parts):
        common += 1
    prefix = "".join(parts[0][:common]) if parts else ""
    return {w: _clip("".join(p[common:]), LABEL_MAX) for w, p in zip(workers, parts, strict=True)}, prefix


def _pack(bars: list[_Bar], tolerance: float) -> tuple[list[tuple[_Bar, int]], int]:
    """(bar, sub-row) pairs so that no two bars of one sub-row overlap, and the row count."""
    ends: list[float] = []
    placed = []
    for b in sorted(bars, key=lambda b: (b.start, b.end, b.name)):
        row = next((r for r, e in enumerate(ends) if b.start >= e - tolerance), len(ends))
        if row == len(ends):
            ends.append(b.end)
        ends[row] = b.end
        placed.append((b, row))
    return placed, max(1, len(ends))


def _ticks(span: float, target: int = 10) -> tuple[list[float], int]:
    """Round tick positions (1, 2 or 5 x 10^k apart) from 0 to span, and decimals to print."""
    raw = span / target
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw * 0.999)
    n = int(span / step + 1e-9)
    return [i * step for i in range(n + 1)], max(0, -math.floor(math.log10(step)))


def _title(b: _Bar, t0: float) -> str:
    lines = [b.name, f"attempt {b.attempt} of {b.attempts}: "
             + {"ok": "completed", "retried": "failed, retried", "failed": "failed"}[b.kind]
             + (" (critical path)" if b.crit else ""),
             f"{b.start - t0:.3f} s → {b.end - t0:.3f} s ({b.end - b.start:.3f} s)",
             f"worker {b.worker}" if b.worker else f"no worker{' (lost)' if b.lost else ''}"]
    if b.error:
        lines.append(_clip(str(b.error), 300))
    return _esc("\n".join(lines))


def _svg(bars: list[_Bar], report: dict) -> str:
    workers = sorted({b.worker for b in bars if b.worker is not None}, key=_natural)
    labels, prefix = lane_labels(workers)
    lanes = workers + ([None] if any(b.worker is None for b in bars) else [])
    label_w = 9 + CHAR_W * max([len(v) for v in labels.values()] + [len(NO_WORKER), 6])
    left, top = round(label_w + 12), 34
    if not bars:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + PLOT_W}" height="60" class="gantt">'
                f'<text x="{left}" y="34" class="note">no attempt ran</text></svg>')
    t0, t1 = min(b.start for b in bars), max(b.end for b in bars)
    marks = _marks(report)
    reach = t0 + (1 + MARK_REACH) * max(t1 - t0, 1e-3)
    t1 = max([t1] + [t for _, t in marks if t <= reach])  # the axis stretches to show them
    span = max(t1 - t0, 1e-3)
    x = lambda t: left + (t - t0) / span * PLOT_W
    rows, y, body = {}, top, []
    for i, lane in enumerate(lanes):
        placed, n = _pack([b for b in bars if b.worker == lane], 0.5 * span / PLOT_W)
        h = n * ROW_H + 2 * LANE_PAD
        label = labels.get(lane, NO_WORKER)
        body.append(f'<rect class="lane{" odd" if i % 2 else ""}" x="0" y="{y}" width="{left + PLOT_W + 8}" '
                    f'height="{h}"><title>{_esc(lane or "attempts without a worker: timed out or lost")}'
                    f'</title></rect><text class="lane-label" x="{left - 8}" y="{y + LANE_PAD + ROW_H / 2 + 4:.1f}">'
                    f'{_esc(label)}</text>')
        for b, r in placed:
            rows[b] = y + LANE_PAD + r * ROW_H
        y += h
    height = y
    ticks, decimals = _ticks(span)
    grid = [f'<line class="grid" x1="{x(t0 + t):.1f}" y1="{top - 4}" x2="{x(t0 + t):.1f}" y2="{height}"/>'
            f'<text class="tick" x="{x(t0 + t):.1f}" y="{top - 8}">{t:.{decimals}f}</text>' for t in ticks]
    drawn = []
    for b in sorted(bars, key=lambda b: (b.crit, b.start)):  # critical outlines on top of neighbours
        bx, by, w = x(b.start), rows[b] + 1, max(1.0, x(b.end) - x(b.start))
        cls = f"bar {b.kind}{' crit' if b.crit else ''}"
        drawn.append(f'<rect class="{cls}" x="{bx:.1f}" y="{by}" width="{w:.1f}" height="{ROW_H - 2}">'
                     f'<title>{_title(b, t0)}</title></rect>')
        fit = int((w - 6) / CHAR_W)
        if fit >= 6:  # "svc…" says nothing the hover does not
            text = b.name if len(b.name) <= fit else b.name[: fit - 1] + "…"
            drawn.append(f'<text class="lbl" x="{bx + 3:.1f}" y="{by + ROW_H / 2 + 2.5:.1f}">{_esc(text)}</text>')
    caption = "seconds from the first start; lanes are workers" + (f" on {prefix}…" if prefix else "")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="gantt" width="{left + PLOT_W + 16}" '
            f'height="{height + 6}" viewBox="0 0 {left + PLOT_W + 16} {height + 6}">'
            f'<style>{_SVG_CSS}</style><text class="caption" x="{left}" y="12">{_esc(caption)}</text>'
            + "".join(body) + "".join(grid) + _crit_line(bars, report, rows, x) + "".join(drawn)
            + _mark_lines(marks, t0, t1, x, top, height) + "</svg>")


def _marks(report: dict) -> list[tuple[str, float]]:
    """(kind, Unix seconds) of the deadline and the finish projected at the start, where the report has them."""
    d = report.get("deadline")
    if not isinstance(d, dict):
        return []
    out = [("predicted", _num(d.get("predicted_finish_at_start"))), ("deadline", _num(d.get("at")))]
    return [(k, t) for k, t in out if t is not None]


def _mark_lines(marks, t0: float, t1: float, x, top: int, height: int) -> str:
    """A labelled vertical line per mark on the axis; one past the axis (or before it) is named at its edge."""
    out = []
    for k, (kind, t) in enumerate(marks):
        colour, name = MARKS[kind]
        clock = datetime.fromtimestamp(t).strftime("%H:%M:%S")
        y = top + 12 + 14 * k
        title = f"<title>{_esc(name)}: {_esc(clock)} ({t - t0:+.2f} s from the first start)</title>"
        if t0 <= t <= t1 + 1e-9:
            px = x(t)
            anchor = "end" if px > x(t0) + 0.8 * (x(t1) - x(t0)) else "start"
            dx = -4 if anchor == "end" else 4
            out.append(f'<g class="mark {kind}">{title}<line x1="{px:.1f}" y1="{top - 4}" x2="{px:.1f}" '
                       f'y2="{height}" stroke="{colour}"/><text x="{px + dx:.1f}" y="{y}" text-anchor="{anchor}" '
                       f'fill="{colour}">{_esc(name)} {_esc(clock)}</text></g>')
        else:
            later = t > t1
            px, anchor = (x(t1), "end") if later else (x(t0), "start")
            out.append(f'<g class="mark {kind} off">{title}<text x="{px:.1f}" y="{y}" text-anchor="{anchor}" '
                       f'fill="{colour}">{"" if later else "← "}{_esc(name)} {_esc(clock)}'
                       f'{" →" if later else ""} (off the chart)</text></g>')
    return "".join(out)


def _crit_line(bars, report, rows, x) -> str:
    last = {}
    for b in bars:  # the attempt that counted: the last one
        if b.crit and (b.name not in last or b.attempt > last[b.name].attempt):
            last[b.name] = b
    path = [last[n] for n in report.get("critical_path") or () if n in last]
    mid = lambda b: rows[b] + ROW_H / 2
    # only the hops between bars: drawn under the bars, they never cross a label
    hops = "".join(f"M{x(a.end):.1f} {mid(a):.1f}L{x(b.start):.1f} {mid(b):.1f}" for a, b in pairwise(path))
    return f'<path class="cpath" d="{hops}"/>' if hops else ""


_SVG_CSS = (
    ".lane{fill:#f3f4f7}.lane.odd{fill:#fbfbfc}.grid{stroke:#d5d8e0;stroke-width:1}"
    ".tick{font:11px sans-serif;fill:#555;text-anchor:middle}.caption,.note{font:12px sans-serif;fill:#555}"
    ".lane-label{font:11px monospace;fill:#222;text-anchor:end}"
    ".bar{stroke:#fff;stroke-width:.5}"
    + "".join(f".bar.{k}{{fill:{c}}}" for k, c in COLOURS.items() if k != "crit")
    + f".bar.crit{{stroke:{COLOURS['crit']};stroke-width:2}}"
    ".lbl{font:11px monospace;fill:#1a1a1a;pointer-events:none}"
    ".mark line{stroke-width:1.5;stroke-dasharray:6 3}.mark text{font:11px sans-serif;paint-order:stroke;"
    "stroke:#fff;stroke-width:3px}"
    f".cpath{{fill:none;stroke:{COLOURS['crit']};stroke-width:1.2;stroke-dasharray:4 3;opacity:.75;"
    "pointer-events:none}"
)

_PAGE_CSS = """
body{font:14px/1.45 system-ui,sans-serif;color:#222;margin:24px;max-width:1600px}
h1{font-size:20px;margin:0 0 12px}h2{font-size:16px;margin:22px 0 8px}
dl.stats{display:grid;grid-template-columns:repeat(auto-fill,minmax(118px,1fr));gap:6px 10px;margin:0}
p.sub{margin:-6px 0 12px;color:#555}dl.stats div.failed dd{color:#b3261e}
dl.stats div{background:#f3f4f7;border-radius:4px;padding:6px 10px}
dt{font-size:12px;color:#666}dd{margin:0;font-weight:600;font-size:16px;font-variant-numeric:tabular-nums}
.scroll{overflow-x:auto;margin-top:16px;border:1px solid #e3e5ea;width:fit-content;max-width:100%}
.legend span.sw{display:inline-block;width:14px;height:12px;vertical-align:-1px;margin:0 5px 0 14px}
.legend span.sw:first-child{margin-left:0}
ol.path{list-style:none;padding:0;margin:6px 0;display:flex;flex-wrap:wrap;gap:4px 0}
ol.path li:not(:last-child)::after{content:"→";margin:0 6px;color:#888}
table{border-collapse:collapse}td,th{text-align:left;padding:4px 10px;border-bottom:1px solid #e3e5ea;
vertical-align:top}pre{margin:0;white-space:pre-wrap;word-break:break-word;font-size:12px}
code{font-size:12px}.muted{color:#777}
"""


def _stats(report: dict, counts: dict) -> str:
    """A subtitle (who, when) and one card per number."""
    makespan, lower = _num(report.get("makespan_s")), _num(report.get("lower_bound_s"))
    eff = _num(report.get("efficiency"))
    if eff is None and makespan and lower is not None:
        eff = lower / makespan
    started = _num(report.get("started_at"))
    when = "" if started is None else datetime.fromtimestamp(started, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    sub = " · ".join(p for p in (f"runner <b>{_esc(report.get('runner') or '—')}</b>",
                                 f"started {when}" if when else "",
                                 f"flow run <code>{_esc(report['flow_run_id'])}</code>"
                                 if report.get("flow_run_id") else "") if p)
    measured_lower = _num(report.get("measured_lower_bound_s"))
    predicted = _num(report.get("predicted_makespan_s"))
    error = _num(report.get("prediction_error"))
    cores = _num(report.get("cores"))
    # two families of figures, each named for what it measures: "as run" from the durations the
    # services really took (how tightly the dispatcher packed them), "planned" from the plan (how
    # long the run took against what was possible on paper: contention shows up here)
    packing = eff if measured_lower is not None else None
    planned_eff = lower / makespan if lower is not None and makespan else None
    cards = [("makespan", _secs(makespan), "as run: first dispatch to last completion"),
             ("predicted makespan", _secs(predicted) + (f" ({error:+.0%})" if error is not None else ""),
              "planned: on the machine model" + (f" ({cores:g} cores)" if cores else "")
              + "; in brackets, how far the run was from it"),
             *_deadline_cards(report),
             ("critical path as run", _secs(_num(report.get("measured_critical_path_s"))),
              "as run: the longest chain of the durations the services took"),
             ("lower bound as run", _secs(measured_lower), "as run: no schedule of these durations could be faster"),
             ("packing", "—" if packing is None else f"{packing:.0%}",
              "as run: lower bound as run / makespan, how tightly the services were packed"),
             ("planned critical path", _secs(_num(report.get("critical_path_s"))), "planned: from estimates"),
             ("planned lower bound", _secs(lower), "planned: from estimates, cores and limits"),
             ("planned efficiency", "—" if planned_eff is None else f"{planned_eff:.0%}",
              "planned lower bound / makespan: low when services ran slower than planned"),
             ("simulated makespan", _secs(_num(report.get("simulated_makespan_s"))),
              "planned: the list schedule on slots alone, no contention, no overhead"),
             ("total work", _secs(_num(report.get("total_work_s"))), "planned: sum of estimates"),
             ("max concurrency", _esc(report.get("max_concurrency") or "—"), "slots"),
             *((k, str(n), f"services {k}") for k, n in counts.items() if n or k != "not run")]
    return (f'<p class="sub">{sub}</p><dl class="stats">'
            + "".join(f'<div class="{k.replace(" ", "-")}" title="{t}"><dt>{k}</dt><dd>{v}</dd></div>'
                      for k, v, t in cards) + "</dl>")


def _deadline_cards(report: dict) -> list[tuple[str, str, str]]:
    """The deadline (met or by how much it was missed) and when it was flagged at risk."""
    d = report.get("deadline")
    at = _num(d.get("at")) if isinstance(d, dict) else None
    if at is None:
        return []
    finished, flagged = _num(d.get("finished_at")), _num(d.get("at_risk_at"))
    hms = lambda t: datetime.fromtimestamp(t).strftime("%H:%M:%S")
    from ..planning.deadline import span

    verdict = ("met" if d.get("met") else f"missed by {span(finished - at)}" if finished is not None and finished > at
               else "not met")
    return [("deadline", f"{hms(at)} {verdict}", f"finish by {_esc(d.get('given') or hms(at))}"
             + (f" (margin {_num(d.get('margin_s')) or 0:g} s)" if _num(d.get("margin_s")) else "")
             + (f"; finished {hms(finished)}" if finished is not None else "")),
            ("flagged at risk", hms(flagged) if flagged is not None else "never",
             "when the projected finish first passed the deadline (less its margin)")]


def _legend(report: dict, services: dict) -> str:
    sw = "".join(f'<span class="sw" style="background:{COLOURS[k]}"></span>{t}' for k, t in
                 (("ok", "completed"), ("retried", "failed attempt, retried"), ("failed", "failed for good")))
    sw += (f'<span class="sw" style="border:2px solid {COLOURS["crit"]};box-sizing:border-box"></span>'
           f'critical path (planned; <span style="color:{COLOURS["crit"]}">- - -</span> joins its services in order)')
    items = []
    for name in report.get("critical_path") or ():
        s = services.get(name) or {}
        start, end = _num(s.get("start")), _num(s.get("end"))
        took = f' <span class="muted">{end - start:.2f} s</span>' if start is not None and end is not None else ""
        state = s.get("state") or "not in report"
        state = "" if state == "completed" else f' <span class="muted">({_esc(state)})</span>'
        items.append(f"<li><code>{_esc(name)}</code>{took}{state}</li>")
    path = (f'<h2>Critical path: {len(items)} services, {_secs(_num(report.get("critical_path_s")))} planned</h2>'
            f'<ol class="path">{"".join(items)}</ol>') if items else ""
    return f'<div class="legend">{sw}</div>{path}'


def _problems(services: dict) -> str:
    out = []
    failed = sorted(n for n, s in services.items() if s.get("state") == "failed")
    if failed:
        rows = []
        for n in failed:
            s = services[n]
            err = str(s.get("error") or "")
            err = err if len(err) <= ERROR_MAX else err[:ERROR_MAX] + f"… ({len(err) - ERROR_MAX} more characters)"
            rows.append(f"<tr><td><code>{_esc(n)}</code></td><td>{_esc(s.get('attempts') or 0)}</td>"
                        f"<td><code>{_esc(s.get('worker') or '—')}</code></td><td><pre>{_esc(err)}</pre></td></tr>")
        out.append(f"<h2>Failed ({len(failed)})</h2><table><tr><th>service</th><th>attempts</th>"
                   f"<th>last worker</th><th>error</th></tr>{''.join(rows)}</table>")
    for state, title in (("skipped", "Skipped"), ("not_run", "Not run")):
        names = sorted(n for n, s in services.items() if s.get("state") == state)
        if not names:
            continue
        groups: dict[str, list[str]] = {}
        for n in names:  # one line per failure, not per skipped service
            groups.setdefault(str(services[n].get("skipped_because") or ""), []).append(n)
        rows = "".join(f"<tr><td>{'after <code>' + _esc(why) + '</code> failed' if why else '—'}</td>"
                       f"<td>{', '.join(f'<code>{_esc(n)}</code>' for n in group)}</td></tr>"
                       for why, group in sorted(groups.items()))
        out.append(f"<h2>{title} ({len(names)})</h2><table><tr><th>because</th><th>services</th></tr>"
                   f"{rows}</table>")
    return "".join(out)


def render_html(report: dict) -> str:
    """The run as one self-contained HTML page: summary, Gantt chart by worker, failures."""
    services = report.get("services") or {}
    counts = {k: sum(1 for s in services.values() if s.get("state") == st)
              for k, st in (("completed", "completed"), ("failed", "failed"), ("skipped", "skipped"),
                            ("not run", "not_run"))}
    title = f"critpath run timeline: {report.get('runner') or 'unknown runner'}"
    return ("<!DOCTYPE html>\n"
            f'<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
            f"<style>{_PAGE_CSS}</style></head><body>\n"
            f"<h1>{_esc(title)}</h1>{_stats(report, counts)}\n"
            f'<div class="scroll">{_svg(_bars(report), report)}</div>\n'
            f"{_legend(report, services)}\n{_problems(services)}\n</body></html>\n")


def write_timeline(report: dict, path: str | os.PathLike) -> Path:
    """Write ``render_html(report)`` to ``path`` atomically: a reader never sees half a page."""
    return write_text(path, render_html(report))
