"""The certification page: certified accuracy against the L2 radius (a lower bound that holds
with probability 1−α) beside the attacked accuracy of the same smoothed classifier (an upper
bound), so the gap between what is proven and what is broken shows."""

from __future__ import annotations

import json

from robustness.pages import plots

CERTIFIED, ATTACKED = "certified (lower bound)", "attacked (upper bound)"


def _figures(points: list[tuple[float, float]]) -> str:
    return ", ".join(f"r={r:g} {100 * a:.1f}%" for r, a in points)


def certification_context(report: dict) -> dict:
    model, spec = report.get("model", {}), report["spec"]
    certified = [(r["radius"], r["accuracy"]) for r in report["certified_accuracy"]]
    attack = report.get("attack") or {}
    attacked = {r["radius"]: r["accuracy"] for r in attack.get("results", [])}
    series = [(CERTIFIED, certified, {"linestyle": "-"})]
    if attacked:
        series.append((ATTACKED, sorted(attacked.items()), {"linestyle": "--"}))
    alt = f"Accuracy against the L2 radius. {CERTIFIED}: {_figures(certified)}." + (
        f" {ATTACKED}: {_figures(sorted(attacked.items()))}." if attacked else "")
    plot = plots.lines([("", series)], y_label="accuracy", x_label="L2 radius", alt=alt)
    return {"title": "Certification report: "
                     f"{model.get('name') or model.get('architecture') or 'model'} "
                     f"(σ={spec['sigma']:g})",
            "model": model, "dataset": report.get("dataset", {}), "spec": spec,
            "n": len(report["examples"]["index"]), "report": report,
            "rows": [{"radius": r["radius"], "certified": r["accuracy"],
                      "attacked": attacked.get(r["radius"])}
                     for r in report["certified_accuracy"]],
            "radii": [r["radius"] for r in report["certified_accuracy"]],
            "attack": attack, "plot": plot, "cost": report.get("cost", {}),
            "device": report.get("provenance", {}).get("device"),
            "per_class": report.get("per_class", []),
            "provenance": json.dumps(report.get("provenance", {}), indent=1, sort_keys=True)}
