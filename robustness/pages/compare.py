"""The comparison page: two or more audits of the same examples on the same axes (the first
is the baseline), each later one against it with compare_reports's deltas, flips and verdict."""

from __future__ import annotations

from robustness.evaluation.compare import compare_reports
from robustness.pages import plots
from robustness.pages.audit import norm_name, worst_case

FLIPS_SHOWN = 60


def _name(report: dict, fallback: str) -> str:
    model = report.get("model", {})
    return str(model.get("name") or model.get("architecture") or fallback)


def comparison_context(audits: list[tuple[str, dict]], tolerance: float = 0.01) -> dict:
    """`audits`: (id or file name, report), the baseline first. Raises SpecError when they are
    not on the same examples."""
    (_, base), others = audits[0], audits[1:]
    comparisons = [(oid, other, compare_reports(base, other, tolerance))
                   for oid, other in others]
    names = [f"{_name(r, i)} ({i})" for i, r in audits]
    norms = list(dict.fromkeys(r["norm"] for _, rep in audits for r in rep["results"]))
    panels = []
    for norm in norms:
        series = []
        for k, ((_, rep), name) in enumerate(zip(audits, names)):
            worst = [(w["epsilon"], w["accuracy"]) for w in rep.get("worst_case", [])
                     if w["norm"] == norm]
            s = plots.style(k)
            series.append((f"{name}: worst case", worst, {"color": s["color"],
                                                          "marker": s["marker"],
                                                          "linewidth": 2.2}))
            for j, label in enumerate(dict.fromkeys(r["label"] for r in rep["results"]
                                                    if r["norm"] == norm)):
                pts = [(r["epsilon"], r["accuracy"]) for r in rep["results"]
                       if r["norm"] == norm and r["label"] == label]
                series.append((f"{name}: {label}", pts, {
                    "color": s["color"], "marker": s["marker"], "alpha": 0.55,
                    "linewidth": 1, "linestyle": plots.STYLES[1 + j % 3]}))
        panels.append((f"{norm_name(norm)} threat model", series))
    accuracy = plots.lines(panels, y_label="robust accuracy", alt=(
        "Robust accuracy against ε of " + ", ".join(names) + ": " + "; ".join(
            f"{name} clean {100 * rep['clean']['accuracy']:.1f}%" for name, (_, rep)
            in zip(names, audits))))
    flip_panels, wa = [], worst_case(base)
    for (_, other, _), name in zip(comparisons, names[1:]):
        wb = worst_case(other)
        for norm in norms:
            broken, fixed = [], []
            for (n, e) in sorted(k for k in wa if k in wb and k[0] == norm):
                pairs = list(zip(wa[(n, e)], wb[(n, e)]))
                broken.append((e, sum(not a[2] and b[2] for a, b in pairs) / len(pairs)))
                fixed.append((e, sum(a[2] and not b[2] for a, b in pairs) / len(pairs)))
            flip_panels.append((f"{name} against the baseline, {norm_name(norm)}", [
                ("broken in this one (robust in the baseline)", broken,
                 {"color": "#c62828", "marker": "v"}),
                ("fixed in this one (broken in the baseline)", fixed,
                 {"color": "#2e7d32", "marker": "^", "linestyle": "--"})]))
    flips = plots.lines(flip_panels, y_label="share of examples", alt=(
        "Per-example flips against the baseline, worst case over attacks, per ε: the share "
        "of examples broken in the later audit but robust in the baseline, and the reverse."))
    return {"title": "Comparison: " + " against ".join(reversed(names[:2])) +
                     (f" and {len(names) - 2} more" if len(names) > 2 else ""),
            "names": names, "audits": audits, "base_name": names[0],
            "comparisons": [{"id": oid, "name": name, "report": other, **cmp}
                            for (oid, other, cmp), name in zip(comparisons, names[1:])],
            "plots": [p for p in (accuracy, flips) if p is not None],
            "flips_shown": FLIPS_SHOWN, "tolerance": tolerance}
