"""The training page: a training's per-epoch history (loss; clean, FGSM and PGD accuracy on
the held-out split) as plots, with catastrophic overfitting marked at the epoch the monitor
caught it, and the selected checkpoint."""

from __future__ import annotations

import json

from robustness.pages import plots


def training_context(card: dict, *, status: str | None = None, job_id: str | None = None) -> dict:
    """`card`: a model card (model.json) or, for a training still running or whose model is
    gone, {"metadata": ..., "training": {"spec", "method", "history"}}."""
    t = card.get("training") or {}
    meta = card.get("metadata") or {}
    history = t.get("history") or []
    marks: list[tuple[int, str]] = []
    # The card's record of the collapse; a running job's history flags it epoch by epoch.
    co = t.get("catastrophic_overfitting") or next(
        ({"epoch": h["epoch"]} for h in history if h.get("catastrophic_overfitting")), None)
    if co:
        marks.append((co["epoch"], f"catastrophic overfitting (epoch {co['epoch']})"))
    if t.get("selected_epoch") and t.get("checkpoint") == "best":
        marks.append((t["selected_epoch"], f"selected checkpoint (epoch {t['selected_epoch']})"))
    # A distillation job's history has the teacher's epochs first (phase "teacher").
    series_rows = [h for h in history if h.get("phase") != "teacher"]
    plot = plots.history([h["epoch"] for h in series_rows], [
        ("training loss", [("loss", [h.get("loss") for h in series_rows])]),
        ("held-out accuracy", [(name, [h.get(key) for h in series_rows]) for key, name in
                               (("clean_accuracy", "clean"), ("fgsm_accuracy", "FGSM"),
                                ("pgd_accuracy", "PGD"))])],
        marks=marks, alt=_alt(series_rows, marks))
    teacher = t.get("teacher") or {}
    teacher_rows = teacher.get("history") or [h for h in history if h.get("phase") == "teacher"]
    teacher_plot = plots.history([h["epoch"] for h in teacher_rows], [
        ("teacher loss", [("loss", [h.get("loss") for h in teacher_rows])]),
        ("teacher held-out accuracy", [("clean", [h.get("clean_accuracy")
                                                  for h in teacher_rows])])],
        marks=[], alt="The distillation teacher's loss and clean accuracy per epoch.") \
        if teacher_rows else None
    spec = t.get("spec") or {}
    return {"title": f"Training report: {meta.get('name') or meta.get('architecture') or 'model'}",
            "meta": meta, "training": t, "spec": spec, "history": series_rows,
            "teacher_history": teacher_rows, "status": status, "job_id": job_id,
            "collapse": co, "plots": [p for p in (plot, teacher_plot) if p is not None],
            "spec_json": json.dumps(spec, indent=1, sort_keys=True),
            "provenance": json.dumps(card.get("provenance") or {}, indent=1, sort_keys=True),
            "weights": card.get("weights") or {}}


def _alt(rows: list[dict], marks: list[tuple[int, str]]) -> str:
    if not rows:
        return "No epoch has finished yet."
    last = rows[-1]

    def pct(v):
        return "not measured" if v is None else f"{100 * v:.1f}%"

    words = (f"Training loss and held-out accuracy over {len(rows)} epoch(s); at the last "
             f"epoch, loss {last.get('loss', 0):.4f}, clean {pct(last.get('clean_accuracy'))}, "
             f"FGSM {pct(last.get('fgsm_accuracy'))}, PGD {pct(last.get('pgd_accuracy'))}.")
    return words + "".join(f" Marked: {label}." for _, label in marks)
