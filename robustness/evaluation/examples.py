"""Per-example records of a report, one per (attack, ε, example), filtered and ordered: what
`GET /v1/audits/{id}/examples` pages through and what the report page's gallery shows.

`breaking=True` keeps one record per example and norm: at the smallest ε of the grid at which
any selected attack broke it (its breaking ε), the most confident of the attacks that broke it
there (a clean error: once, at ε = 0). Each failure appears once, at the smallest perturbation that caused it, and its
confidence is the model's confidence on that adversarial.
"""

from __future__ import annotations

import math
from typing import Literal

from robustness.errors import SpecError

Order = Literal["report", "confidence"]


def _eps_matches(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def select_columns(report: dict, attack: str | None, epsilon: float | None) -> list[dict]:
    """The report's adversarial columns for `attack` (an attack's label in the report) and
    `epsilon`, checked."""
    if epsilon is not None and not math.isfinite(epsilon):
        raise SpecError(f"epsilon: {epsilon} is not a finite number")
    cols = report["examples"]["adversarial"]
    attack_labels = sorted({c["label"] for c in cols})
    if attack is not None and attack not in attack_labels:
        raise SpecError(f"attack: {attack!r} is not in this report; its attacks are "
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
            raise SpecError(f"epsilon: {epsilon:g} is not in this report's grid"
                            f"{' for ' + attack if attack else ''}: "
                            f"{', '.join(f'{e:g}' for e in grid)}")
    return chosen


def _record(col: dict, i: int, ex: dict) -> dict:
    clean, label = ex["clean"], ex["label"][i]
    return {"attack": col["label"], "norm": col.get("norm"), "epsilon": col["epsilon"],
            "index": ex["index"][i], "label": label, "pred": col["pred"][i],
            "confidence": col["confidence"][i], "true_class_prob": col["true_class_prob"][i],
            "misclassified": col["pred"][i] != label,
            "linf": col["linf"][i], "l2": col["l2"][i],
            "clean_pred": clean["pred"][i], "clean_confidence": clean["confidence"][i],
            "topk": col["topk"][i], "topk_confidence": col["topk_confidence"][i],
            "clean_topk": clean["topk"][i], "clean_topk_confidence": clean["topk_confidence"][i],
            "position": i}


def _breaking_key(col: dict, i: int, clean_wrong: bool) -> tuple[str | None, int]:
    # A clean error is broken at ε = 0 under every norm: listed once, at the smallest ε.
    return (None if clean_wrong or col["epsilon"] == 0 else col.get("norm")), i


def matching_records(report: dict, *, attack: str | None = None, epsilon: float | None = None,
                     misclassified: bool | None = None, min_confidence: float | None = None,
                     breaking: bool = False, clean_correct: bool | None = None,
                     order: Order = "report") -> list[tuple[dict, int]]:
    """(column, position) of every record the filters keep (`clean_correct`: only examples
    the model got right, or wrong, on the clean input), in `order`: report order
    (columns as the report lists them, examples by position) or most confident first (ties:
    smaller ε first, then report order). Records are built by the caller, for one page."""
    ex = report["examples"]
    labels, clean_pred = ex["label"], ex["clean"]["pred"]
    columns = select_columns(report, attack, epsilon)
    # breaking: per (norm, example) the one column kept, the smallest ε that broke it and the
    # most confident of the attacks there (ties: report order).
    chosen: dict[tuple[str | None, int], dict] = {}
    if breaking:
        for col in columns:
            for i, (p, y) in enumerate(zip(col["pred"], labels)):
                if p == y:
                    continue
                key = _breaking_key(col, i, clean_pred[i] != y)
                best = chosen.get(key)
                if best is None or (col["epsilon"], -col["confidence"][i]) < (
                        best["epsilon"], -best["confidence"][i]):
                    chosen[key] = col
    kept = []
    for col in columns:
        conf = col["confidence"]
        for i, y in enumerate(labels):
            wrong = col["pred"][i] != y
            if misclassified is not None and wrong != misclassified:
                continue
            if min_confidence is not None and conf[i] < min_confidence:
                continue
            if clean_correct is not None and (clean_pred[i] == y) != clean_correct:
                continue
            if breaking and chosen.get(_breaking_key(col, i, clean_pred[i] != y)) is not col:
                continue
            kept.append((col, i))
    if order == "confidence":
        rank = {id(c): n for n, c in enumerate(columns)}
        kept.sort(key=lambda ci: (-ci[0]["confidence"][ci[1]], ci[0]["epsilon"],
                                  rank[id(ci[0])], ci[1]))
    return kept


def example_records(report: dict, *, offset: int = 0, limit: int = 100,
                    **filters) -> tuple[list[dict], int]:
    """One page of records (see `matching_records`) and how many matched in all."""
    kept = matching_records(report, **filters)
    ex = report["examples"]
    return [_record(col, i, ex) for col, i in kept[offset:offset + limit]], len(kept)
