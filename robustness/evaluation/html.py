"""The certification report as one self-contained HTML page: certified and attacked accuracy
against the L2 radius (inline SVG, no scripts, no external assets). Every string from the
report is escaped: model names and labels come from users. The audit, comparison and training
pages are robustness.pages."""

from __future__ import annotations

from html import escape

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f"]


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def _svg(series: dict[str, list[tuple[float, float]]], width=640, height=320, *,
         x_label: str = "ε", dashed: frozenset[str] = frozenset()) -> str:
    """Accuracy against ε (or a radius), one polyline per series; ε axes of different norms
    share the plot's x range, so each series is labelled with its norm."""
    xs = [e for pts in series.values() for e, _ in pts] or [0.0, 1.0]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    left, right, top, bottom = 50, 170, 15, 40
    w, h = width - left - right, height - top - bottom

    def px(e):
        return left + w * (e - x0) / (x1 - x0)

    def py(a):
        return top + h * (1 - a)

    parts = [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
              f'role="img" aria-label="accuracy against {escape(x_label)}">'),
             f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#999"/>']
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        y = py(tick)
        parts.append(f'<line x1="{left}" x2="{left + w}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="#eee"/><text x="{left - 6}" y="{y + 4:.1f}" font-size="11" '
                     f'text-anchor="end">{int(tick * 100)}%</text>')
    for i in range(5):
        e = x0 + (x1 - x0) * i / 4
        parts.append(f'<text x="{px(e):.1f}" y="{top + h + 16}" font-size="11" '
                     f'text-anchor="middle">{e:g}</text>')
    parts.append(f'<text x="{left + w / 2}" y="{height - 6}" font-size="12" '
                 f'text-anchor="middle">{escape(x_label)}</text>')
    for i, (name, pts) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        path = " ".join(f"{px(e):.1f},{py(a):.1f}" for e, a in pts)
        dash = ' stroke-dasharray="6 4"' if name in dashed else ""
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2"{dash} '
                     f'points="{path}"/>')
        for e, a in pts:
            parts.append(f'<circle cx="{px(e):.1f}" cy="{py(a):.1f}" r="3" fill="{color}">'
                         f'<title>{escape(name)} {escape(x_label)}={e:g}: {_pct(a)}</title></circle>')
        y = top + 14 + 18 * i
        parts.append(f'<line x1="{left + w + 12}" x2="{left + w + 32}" y1="{y - 4}" '
                     f'y2="{y - 4}" stroke="{color}" stroke-width="2"{dash}/>'
                     f'<text x="{left + w + 38}" y="{y}" font-size="12">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _page(title: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:70em}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:.25em .6em;
text-align:right}}th{{background:#f4f4f4}}td:first-child{{text-align:left}}</style></head>
<body><h1>{escape(title)}</h1>
{body}
</body></html>
"""


def render_certification_html(report: dict) -> str:
    """The certification report's page: certified accuracy against the L2 radius (a lower
    bound that holds with probability 1−α) beside the attacked accuracy of the same smoothed
    classifier (an upper bound), so the gap between what is proven and what is broken shows."""
    model, data, spec = report.get("model", {}), report.get("dataset", {}), report["spec"]
    title = ("Certification report: "
             f"{model.get('name') or model.get('architecture') or 'model'} (σ={spec['sigma']:g})")
    certified_name, attacked_name = "certified (lower bound)", "attacked (upper bound)"
    series = {certified_name: [(r["radius"], r["accuracy"])
                               for r in report["certified_accuracy"]]}
    attack = report.get("attack") or {}
    attacked = {r["radius"]: r["accuracy"] for r in attack.get("results", [])}
    if attacked:
        series[attacked_name] = sorted(attacked.items())
    rows = "".join(
        f"<tr><td>{r['radius']:g}</td><td>{_pct(r['accuracy'])}</td>"
        f"<td>{_pct(attacked.get(r['radius']))}</td></tr>"
        for r in report["certified_accuracy"])
    radii = [r["radius"] for r in report["certified_accuracy"]]
    class_rows = "".join(
        f"<tr><td>{escape(str(c['class']))}</td><td>{c['n']}</td>"
        f"<td>{_pct(c['abstention_rate'])}</td>"
        + "".join(f"<td>{_pct(a['accuracy'])}</td>" for a in c["certified_accuracy"])
        + "</tr>" for c in report.get("per_class", []))
    cost, prov = report.get("cost", {}), report.get("provenance", {})
    attack_note = (f"<p>Attack: {escape(str(attack.get('name')))}, {attack.get('steps')} "
                   f"steps of PGD-L2 with {attack.get('draws')} noise draws per gradient; the "
                   f"attacked point is classified by the smoothed classifier with "
                   f"{attack.get('n')} draws.</p>" if attack else
                   "<p>No attack on the smoothed classifier was run.</p>")
    return _page(title, f"""<p>Architecture {escape(str(model.get('architecture')))}, sha256
<code>{escape(str(model.get('sha256')))}</code>. Data: {escape(str(data.get('name')))}
{escape(str(data.get('split')))}, {len(report['examples']['index'])} examples. Randomized
smoothing with σ={spec['sigma']:g}, n0={spec['n0']}, n={spec['n']}, α={spec['alpha']:g}.
Device {escape(str(prov.get('device')))}, {cost.get('seconds', 0):.1f} s,
{cost.get('forward_passes', 0):,} forward passes.</p>
<p><b>Smoothed classifier accuracy {_pct(report['clean_accuracy'])}</b>, abstained on
{_pct(report['abstention_rate'])}.</p>
<h2>Accuracy against the L2 radius</h2>
{_svg(series, x_label="L2 radius", dashed=frozenset({attacked_name}))}
<table><tr><th>radius</th><th>certified accuracy</th><th>attacked accuracy</th></tr>{rows}</table>
<p>Certified: the smoothed classifier is right and provably constant within the radius, with
probability at least {1 - spec['alpha']:g} per example. Attacked: right on the point an attack
found within the radius. The truth lies between the two curves.</p>
{attack_note}
<h2>Per class</h2>
<table><tr><th>class</th><th>n</th><th>abstained</th>{''.join(f'<th>certified at {r:g}</th>' for r in radii)}</tr>{class_rows}</table>""")
