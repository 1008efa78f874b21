"""Assembling the v1 report (see shared/DESIGN.md) from per-example records.

Per-example arrays are columnar and aligned with `examples.index`. Besides the contract's
keys the report carries, per example, the smallest ε of each attack's grid that broke it, and
the minimal norm found by minimum-norm attacks.
"""

from __future__ import annotations

import platform
import statistics
from datetime import UTC, datetime
from importlib import metadata

import torch

from robustness import __version__
from robustness.evaluation.metrics import aggregate, columns
from robustness.evaluation.report_schema import SCHEMA_VERSION


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict:
    return {"robustness": __version__, "python": platform.python_version(),
            "torch": torch.__version__,
            **{d: _version(d) for d in ("torchvision", "numpy", "safetensors", "pydantic")}}


def resolved_attacks(spec) -> list[dict]:
    """Every hyperparameter an attack ran with, defaults included (for reproduction)."""
    out = []
    for attack, label in zip(spec.attacks, spec.attack_labels()):
        out.append({**attack.resolved(spec.grid(attack)), "label": label})
    return out


def _broken_at(y, recs_by_eps: list[tuple[float, object]]) -> list[float | None]:
    first = [None] * len(y)
    for eps, rec in sorted(recs_by_eps, key=lambda t: t[0]):
        for i in torch.nonzero(rec.pred != y).squeeze(1).tolist():
            if first[i] is None:
                first[i] = eps
    return first


def build_report(spec, data, records, *, device, model_info: dict, seconds: float) -> dict:
    y = data.y.cpu()
    clean = records.clean
    clean_correct = clean.pred == y
    labels = spec.attack_labels()
    results, adversarial_cols, broken_at = [], [], {}
    for attack, label in zip(spec.attacks, labels):
        by_eps = [(eps, records.adversarial[(label, eps)]) for eps in spec.grid(attack)]
        for eps, rec in by_eps:
            results.append({"attack": attack.name, "label": label, "norm": attack.norm,
                            "epsilon": eps, **aggregate(rec, y, clean_correct, spec.taus)})
            if (label, eps) in records.stages:
                results[-1]["stages"] = _stages(attack, records.stages[(label, eps)],
                                                clean_correct)
            adversarial_cols.append({"attack": attack.name, "label": label, "norm": attack.norm,
                                     "epsilon": eps, **columns(rec)})
        broken_at[label] = _broken_at(y, by_eps)

    min_broken = {}
    for norm in sorted({a.norm for a in spec.attacks}):
        per_attack = [broken_at[lab] for a, lab in zip(spec.attacks, labels) if a.norm == norm]
        min_broken[norm] = [min((v for v in vals if v is not None), default=None)
                            for vals in zip(*per_attack)]

    minimal = []
    minimal_cols = {}
    for attack, label in zip(spec.attacks, labels):
        if label not in records.minimal_norm:
            continue
        size = records.minimal_norm[label]
        found = torch.isfinite(size) & clean_correct
        norms = size[found].tolist()
        minimal.append({"attack": attack.name, "label": label, "norm": attack.norm,
                        "success_rate": float(found.sum() / clean_correct.sum())
                        if clean_correct.any() else None,
                        "mean_norm": statistics.fmean(norms) if norms else None,
                        "median_norm": statistics.median(norms) if norms else None})
        minimal_cols[label] = [v if v != float("inf") else None for v in size.tolist()]

    report = {
        "schema_version": SCHEMA_VERSION,
        "model": model_info,
        "dataset": data.description,
        "spec": spec.model_dump(mode="json"),
        "clean": {k: v for k, v in aggregate(clean, y, clean_correct, spec.taus).items()
                  if k not in ("attack_success_rate", "mean_linf_on_success",
                               "mean_l2_on_success")},
        "results": results,
        "worst_case": _worst_case(spec, labels, records, y),
        "minimal_perturbation": minimal,
        "examples": {
            "index": data.indices.tolist(), "label": y.tolist(),
            "clean": columns(clean, with_perturbation=False),
            "adversarial": adversarial_cols,
            "broken_at": broken_at,
            "min_broken_epsilon": min_broken,
            "minimal_norm": minimal_cols,
        },
        "provenance": {
            "versions": versions(), "platform": f"{platform.system()} {platform.machine()}",
            "device": str(device), "threads": torch.get_num_threads(), "seed": spec.seed,
            "attacks": resolved_attacks(spec),
            "seconds": seconds, "attack_seconds": records.seconds,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    }
    return report


def _stages(attack, stage: torch.Tensor, clean_correct: torch.Tensor) -> list[dict]:
    """A cascade's robust accuracy after each stage (AutoAttack prints the same)."""
    out, robust = [], clean_correct.clone()
    for i, (label, _) in enumerate(attack.stages()):
        hit = stage == i
        robust &= ~hit
        out.append({"label": label, "accuracy": float(robust.double().mean()),
                    "broken": int((hit & clean_correct).sum())})
    return out


def _worst_case(spec, labels, records, y) -> list[dict]:
    """Per norm and ε shared by ≥2 attacks: an example counts as robust only if it survived
    all of them (the per-example minimum over attacks, as AutoAttack reports)."""
    out = []
    for norm in sorted({a.norm for a in spec.attacks}):
        members = [(a, lab) for a, lab in zip(spec.attacks, labels) if a.norm == norm]
        for eps in sorted({e for a, _ in members for e in spec.grid(a)}):
            hit = [lab for a, lab in members if eps in spec.grid(a)]
            if len(hit) < 2:
                continue
            robust = torch.stack([records.adversarial[(lab, eps)].pred == y for lab in hit])
            out.append({"norm": norm, "epsilon": eps, "attacks": hit,
                        "accuracy": float(robust.all(0).double().mean())})
    return out
