"""Report sub-resources: per-example records filtered and paginated, and the adversarial
examples of one (attack, ε) as a tensor file a user can re-check against the report."""

from __future__ import annotations

import io
import math

import numpy as np
import torch

from robustness.evaluation.export import tensor_key
from service.problems import Problem
from service.routes.listing import Paging


def _eps_matches(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def select_columns(report: dict, attack: str | None, epsilon: float | None) -> list[dict]:
    """The report's adversarial columns for `attack` (an attack's label in the report) and
    `epsilon`, checked."""
    if epsilon is not None and not math.isfinite(epsilon):
        raise Problem(422, f"epsilon: {epsilon} is not a finite number")
    cols = report["examples"]["adversarial"]
    attack_labels = sorted({c["label"] for c in cols})
    if attack is not None and attack not in attack_labels:
        raise Problem(422, f"attack: {attack!r} is not in this report; its attacks are "
                           f"{', '.join(attack_labels)}")
    chosen = [c for c in cols if attack is None or c["label"] == attack]
    if epsilon is not None:
        grid = sorted({c["epsilon"] for c in chosen})
        # The exact float when the report has it (a decimal in a URL parses to the same
        # double as in the report's JSON), else the nearest within rounding noise.
        chosen = ([c for c in chosen if c["epsilon"] == epsilon]
                  or [c for c in chosen if _eps_matches(c["epsilon"], epsilon)])
        if attack is not None and len(chosen) > 1:
            # ε within rounding of each other (the grid may hold both): the nearest column.
            chosen = [min(chosen, key=lambda c: abs(c["epsilon"] - epsilon))]
        if not chosen:
            raise Problem(422, f"epsilon: {epsilon:g} is not in this report's grid"
                               f"{' for ' + attack if attack else ''}: "
                               f"{', '.join(f'{e:g}' for e in grid)}")
    return chosen


def example_records(report: dict, *, attack: str | None, epsilon: float | None,
                    misclassified: bool | None, min_confidence: float | None,
                    paging: Paging) -> dict:
    """One record per (attack, ε, example), in report order, after the filters."""
    ex = report["examples"]
    true_class = ex["label"]
    clean = ex["clean"]
    start, limit = paging.offset, paging.limit
    items, position, matched = [], 0, 0
    for col in select_columns(report, attack, epsilon):
        for i, index in enumerate(ex["index"]):
            wrong = col["pred"][i] != true_class[i]
            if misclassified is not None and wrong != misclassified:
                continue
            if min_confidence is not None and col["confidence"][i] < min_confidence:
                continue
            matched += 1
            if position >= start and len(items) < limit:
                items.append({
                    "attack": col["label"], "norm": col.get("norm"), "epsilon": col["epsilon"],
                    "index": index, "label": true_class[i], "pred": col["pred"][i],
                    "confidence": col["confidence"][i],
                    "true_class_prob": col["true_class_prob"][i],
                    "misclassified": wrong,
                    "linf": col["linf"][i], "l2": col["l2"][i],
                    "clean_pred": clean["pred"][i], "clean_confidence": clean["confidence"][i]})
            position += 1
    return paging.answer(items, matched)


def adversarial_file(tensors: dict[str, torch.Tensor], report: dict, attack: str,
                     epsilon: float, fmt: str) -> tuple[bytes, str]:
    """One (attack, ε) of the stored adversarial set, with what a re-check needs: the clean
    inputs are not included (the user has the data set); labels, the report's predictions and
    confidences are, aligned with `index`."""
    (col,) = select_columns(report, attack, epsilon)
    key = tensor_key(col["label"], col["epsilon"])
    if key not in tensors:
        raise Problem(404, f"the adversarial examples of {attack} at ε={epsilon:g} were not "
                           f"stored for this audit")
    out = {"x_adv": tensors[key].contiguous(), "index": tensors["index"],
           "label": tensors["label"],
           "pred": torch.tensor(col["pred"]), "confidence": torch.tensor(col["confidence"]),
           "epsilon": torch.tensor([col["epsilon"]], dtype=torch.float64)}
    if fmt == "safetensors":
        from safetensors.torch import save

        meta = {"attack": attack, "norm": str(col.get("norm")), "epsilon": repr(col["epsilon"])}
        return save(out, metadata=meta), "application/octet-stream"
    if fmt == "npz":
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **{k: v.numpy() for k, v in out.items()})
        return buffer.getvalue(), "application/octet-stream"
    raise Problem(422, f"format: {fmt!r} is not one of safetensors, npz")
