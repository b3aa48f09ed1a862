"""The page ``critpath tune`` writes beside the report: predicted makespan against the limit.

One line per policy (cpu-aware off and on), a point per global limit, the recommended
setting and the current one marked; measured makespans from ``--verify`` as dots. A
jinja2 template rendering an inline SVG: no script, no network, opens anywhere.
"""
from __future__ import annotations

import os
from pathlib import Path

import jinja2

from ..support.files import write_text

W, H, LEFT, RIGHT, TOP, BOTTOM = 760, 360, 60, 20, 30, 40

_TEMPLATE = jinja2.Template("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>critpath tune: {{ title }}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222 }
.axis { stroke: #888 } .grid { stroke: #eee } text { font-size: 12px; fill: #444 }
.off { stroke: #1f6feb; fill: none; stroke-width: 2 } .on { stroke: #d97706; fill: none; stroke-width: 2 }
table { border-collapse: collapse } td, th { padding: 2px 10px; text-align: right; border-bottom: 1px solid #eee }
</style></head><body>
<h1>critpath tune</h1>
<p>{{ title }}. Predicted makespan (from history, on {{ cores }} cores) against the global limit.
Recommended: <b>{{ recommended }}</b>; current: {{ current }}.</p>
<svg width="{{ w }}" height="{{ h }}" role="img" aria-label="predicted makespan against the limit">
{% for t in yticks %}<line class="grid" x1="{{ left }}" x2="{{ w - right }}" y1="{{ t.y }}" y2="{{ t.y }}"/>
<text x="{{ left - 6 }}" y="{{ t.y + 4 }}" text-anchor="end">{{ t.label }}</text>{% endfor %}
{% for t in xticks %}<text x="{{ t.x }}" y="{{ h - bottom + 16 }}" text-anchor="middle">{{ t.label }}</text>{% endfor %}
<line class="axis" x1="{{ left }}" x2="{{ w - right }}" y1="{{ h - bottom }}" y2="{{ h - bottom }}"/>
<line class="axis" x1="{{ left }}" x2="{{ left }}" y1="{{ top }}" y2="{{ h - bottom }}"/>
<text x="{{ (left + w - right) / 2 }}" y="{{ h - 6 }}" text-anchor="middle">max concurrency</text>
{% for line in lines %}<polyline class="{{ line.cls }}" points="{{ line.points }}"/>
<text x="{{ w - right - 4 }}" y="{{ line.label_y }}" text-anchor="end" class="{{ line.cls }}">{{ line.name }}</text>
{% endfor %}
{% for m in marks %}<circle cx="{{ m.x }}" cy="{{ m.y }}" r="{{ m.r }}" fill="{{ m.fill }}"><title>{{ m.title }}</title></circle>
{% endfor %}
</svg>
<h2>Candidates</h2>
<table><tr><th>max concurrency</th><th>pools</th><th>cpu-aware</th><th>predicted s</th></tr>
{% for c in candidates %}<tr><td>{{ c.max_concurrency }}</td><td>{{ c.pools }}</td><td>{{ c.cpu_aware }}</td>
<td>{{ "%.2f"|format(c.predicted_makespan_s) }}</td></tr>{% endfor %}
</table>
{% if verified %}<h2>Verified</h2><table><tr><th>setting</th><th>predicted s</th><th>measured s</th></tr>
{% for v in verified %}<tr><td>{{ v.setting }}</td><td>{{ "%.2f"|format(v.predicted_makespan_s) }}</td>
<td>{{ "%.2f"|format(v.measured_makespan_s) }}</td></tr>{% endfor %}</table>{% endif %}
</body></html>
""", autoescape=True)


def _fmt_setting(s: dict) -> str:
    pools = ", ".join(f"{k}={v}" for k, v in sorted(s.get("pools", {}).items()))
    return (f"max concurrency {s['max_concurrency']}" + (f", pools {pools}" if pools else "")
            + (", cpu-aware" if s.get("cpu_aware") else ""))


def render(result: dict, title: str) -> str:
    cands = result["candidates"]
    base = [c for c in cands if c["pools"] == result["current"]["pools"]]
    xs = sorted({c["max_concurrency"] for c in base}) or [1]
    ys = [c["predicted_makespan_s"] for c in cands] + [v["measured_makespan_s"] for v in result["verified"]]
    y_max = max(ys or [1.0]) * 1.1 or 1.0

    def px(x: float) -> float:
        span = max(1, xs[-1] - xs[0])
        return LEFT + (x - xs[0]) / span * (W - LEFT - RIGHT)

    def py(y: float) -> float:
        return H - BOTTOM - y / y_max * (H - TOP - BOTTOM)

    lines = []
    for aware, cls, name in ((False, "off", "cpu-aware off"), (True, "on", "cpu-aware on")):
        pts = sorted((c["max_concurrency"], c["predicted_makespan_s"]) for c in base if c["cpu_aware"] == aware)
        if pts:
            lines.append({"cls": cls, "name": name, "label_y": py(pts[-1][1]) - 6,
                          "points": " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)})
    rec = result["recommended"]
    marks = [{"x": px(rec["max_concurrency"]), "y": py(rec["predicted_makespan_s"]), "r": 6, "fill": "#16a34a",
              "title": "recommended: " + _fmt_setting(rec)}]
    for v in result["verified"]:
        marks.append({"x": px(v["max_concurrency"]), "y": py(v["measured_makespan_s"]), "r": 4, "fill": "#111",
                      "title": f"measured {v['measured_makespan_s']:.2f} s at " + _fmt_setting(v)})
    step = max(1, len(xs) // 12)
    return _TEMPLATE.render(
        title=title, cores=f"{result.get('cores') or 0:g}", recommended=_fmt_setting(rec),
        current=_fmt_setting(result["current"]), w=W, h=H, left=LEFT, right=RIGHT, top=TOP, bottom=BOTTOM,
        xticks=[{"x": px(x), "label": x} for x in xs[::step]],
        yticks=[{"y": py(y_max * k / 5), "label": f"{y_max * k / 5:.1f} s"} for k in range(6)],
        lines=lines, marks=marks, candidates=sorted(cands, key=lambda c: (c["cpu_aware"], c["max_concurrency"])),
        verified=[{**v, "setting": _fmt_setting(v)} for v in result["verified"]])


def write_page(result: dict, path: str | os.PathLike, title: str) -> Path:
    return write_text(path, render(result, title))
