"""Per-class figures from a report's per-example columns: an aggregate accuracy can hide a
class that an attack takes almost entirely (a stop sign, say), so every report breaks clean
and robust accuracy down by true class and lists where the attacks send each class."""

from __future__ import annotations

from collections import Counter


def per_class(report: dict, num_classes: int, names: list[str] | None = None) -> dict:
    """`classes`: per true class its n, clean accuracy and robust accuracy per (attack, ε);
    `confusion`: per (attack, ε) the misclassifications as [true, predicted, count] rows,
    most frequent first (sparse: at most one row per example, whatever the class count)."""
    ex = report["examples"]
    labels, clean = ex["label"], ex["clean"]["pred"]
    columns = ex["adversarial"]
    classes = []
    for c in range(num_classes):
        rows = [i for i, y in enumerate(labels) if y == c]
        if not rows:
            continue
        entry = {"class": c, "n": len(rows),
                 "clean_accuracy": sum(clean[i] == c for i in rows) / len(rows),
                 "robust": [{"attack": col["label"], "epsilon": col["epsilon"],
                             "accuracy": sum(col["pred"][i] == c for i in rows) / len(rows)}
                            for col in columns]}
        if names:
            entry["name"] = names[c]
        classes.append(entry)
    confusion = []
    for col in columns:
        wrong = Counter((y, p) for y, p in zip(labels, col["pred"]) if p != y)
        confusion.append({"attack": col["label"], "epsilon": col["epsilon"],
                          "errors": [[y, p, n] for (y, p), n in wrong.most_common()]})
    return {"classes": classes, "confusion": confusion}
