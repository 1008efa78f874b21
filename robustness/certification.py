"""The certification entry point: `certify_dataset(model, data, spec)` runs randomized
smoothing's CERTIFY (`robustness.smoothing`) on every example and builds the JSON report that
the CLI writes and the workers store, as `robustness.audit` does for audits.
"""

from __future__ import annotations

import platform
from datetime import UTC, datetime
from pathlib import Path

import torch

from robustness.audit import check_model_fits_data, metadata_for_data, model_info
from robustness.data import load_dataset
from robustness.devices import pick_device
from robustness.evaluation.report import versions
from robustness.memory import PeakMemory
from robustness.models import ModelMetadata, load_model
from robustness.smoothing import (
    Progress,
    attack_smoothed,
    auto_batch,
    certified_accuracy,
    certify_all,
    generator_for,
    smoothed_predictions,
)
from robustness.spec import CertifySpec

KIND = "certification"


def certify_dataset(model, data, spec: CertifySpec, *, device=None,
                    progress: Progress | None = None, model_extra: dict | None = None) -> dict:
    check_model_fits_data(model, data)
    device = pick_device(device) if not isinstance(device, torch.device) else device
    with PeakMemory(device) as memory:
        report = _certify(model, data, spec, device, progress, model_extra)
    report["provenance"]["memory"] = memory.figures()
    return report


def _certify(model, data, spec: CertifySpec, device, progress, model_extra) -> dict:
    num_classes = model.metadata.num_classes
    batch = spec.batch_size or auto_batch(tuple(data.x.shape[1:]), max(spec.n0, spec.n))
    total = len(data.y)
    attack_units = 0 if spec.attack is None else len(spec.attack.radii) * total

    def certified_progress(done: int, _total: int, phase: str) -> None:
        if progress:
            progress(done, total + attack_units, phase)

    result = certify_all(model, data.x, data.y, data.indices, sigma=spec.sigma, n0=spec.n0,
                         n=spec.n, alpha=spec.alpha, num_classes=num_classes,
                         batch_size=batch, seed=spec.seed, top_k=spec.top_k, device=device,
                         progress=certified_progress)
    table = certified_accuracy(result, spec.radii)
    attack = None
    if spec.attack is not None:
        attack = _attack(model, data, spec, result, device, batch,
                         lambda done, phase: certified_progress(total + done, 0, phase))
    report = {
        "kind": KIND,
        "model": {**model_info(model), **(model_extra or {})},
        "dataset": data.description,
        "spec": spec.model_dump(mode="json"),
        "certified_accuracy": table,
        # CERTIFY's prediction, not abstaining and right: the smoothed classifier's accuracy
        "clean_accuracy": certified_accuracy(result, [0.0])[0]["accuracy"],
        "abstention_rate": sum(result.abstain) / total if total else 0.0,
        "per_class": _per_class(result, spec.radii, num_classes),
        "examples": {"index": result.index, "label": result.label, "pred": result.pred,
                     "abstain": result.abstain, "radius": result.radius,
                     "p_lower": result.p_lower, "count": result.count,
                     "top_classes": result.top_classes, "top_counts": result.top_counts},
        "cost": {"forward_passes": result.forward_passes,
                 "forward_passes_per_example": spec.forward_passes_per_example(),
                 "batch_size": batch,
                 "seconds": result.seconds},
        "provenance": {
            "versions": versions(), "platform": f"{platform.system()} {platform.machine()}",
            "device": str(device), "threads": torch.get_num_threads(), "seed": spec.seed,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    }
    if attack is not None:
        report["examples"]["attack_pred"] = attack.pop("pred")
        report["attack"] = attack
        report["cost"]["forward_passes"] += attack["forward_passes"]
        report["cost"]["seconds"] += attack["seconds"]
    return report


def _attack(model, data, spec: CertifySpec, result, device, batch: int, tick) -> dict:
    """SmoothAdv at each radius, then the smoothed prediction at each attacked point. Noise is
    seeded per example and radius, apart from the certificates' streams."""
    import time

    started = time.perf_counter()
    a = spec.attack
    num_classes = model.metadata.num_classes
    rows, preds, done = [], [], 0
    for r_i, r in enumerate(a.radii):
        at_r = []
        for lo in range(0, len(data.y), a.batch_size):
            hi = min(lo + a.batch_size, len(data.y))
            seed = spec.seed + 7919 * (r_i + 1)
            x = data.x[lo:hi].to(device)
            x_adv = attack_smoothed(model, x, data.y[lo:hi].to(device), sigma=spec.sigma,
                                    radius=r, steps=a.steps, draws=a.draws,
                                    generator=generator_for(seed, int(data.indices[lo]), device))
            at_r += smoothed_predictions(
                model, x_adv, sigma=spec.sigma, n=a.n, num_classes=num_classes,
                batch_size=min(batch, a.n),
                generators=[generator_for(seed + 1, int(i), device) for i in data.indices[lo:hi]])
            done += hi - lo
            tick(done, f"attack radius {r:g}: example {hi}/{len(data.y)}")
        preds.append(at_r)
        right = sum(p == y for p, y in zip(at_r, result.label)) / max(1, len(at_r))
        certified = certified_accuracy(result, [r])[0]["accuracy"]
        rows.append({"radius": r, "accuracy": right, "certified_accuracy": certified})
    per_example = len(a.radii) * (2 * a.steps * a.draws + a.n)
    return {"name": "smoothadv_pgd_l2", "norm": "l2", "steps": a.steps, "draws": a.draws,
            "step_size": "2.5·radius/steps", "n": a.n, "results": rows, "pred": preds,
            "forward_passes": len(data.y) * per_example,
            "seconds": time.perf_counter() - started}


def _per_class(result, radii: list[float], num_classes: int) -> list[dict]:
    rows = []
    for c in range(num_classes):
        members = [i for i, y in enumerate(result.label) if y == c]
        if not members:
            continue
        correct = [i for i in members if not result.abstain[i] and result.pred[i] == c]
        rows.append({"class": c, "n": len(members),
                     "abstention_rate": sum(result.abstain[i] for i in members) / len(members),
                     "certified_accuracy": [
                         {"radius": r, "accuracy": sum(result.radius[i] >= r for i in correct)
                          / len(members)} for r in radii]})
    return rows


def certify_model_file(spec: CertifySpec, model_path: str | Path,
                       metadata: ModelMetadata | None = None, *, data_root=None, device=None,
                       progress: Progress | None = None) -> dict:
    device = pick_device(device)
    data = load_dataset(spec.dataset, data_root)
    model = load_model(model_path, metadata_for_data(metadata, data), device=device)
    return certify_dataset(model, data, spec, device=device, progress=progress)


def summary_lines(report: dict) -> list[str]:
    head = (f"smoothed classifier (σ={report['spec']['sigma']}): accuracy "
            f"{report['clean_accuracy']:.4f}, abstained {report['abstention_rate']:.4f} "
            f"(n={len(report['examples']['index'])})")
    lines = [head, f"{'radius':>8}{'certified':>11}"]
    attacked = {row["radius"]: row["accuracy"] for row in report.get("attack", {})
                .get("results", [])}
    lines[-1] += f"{'attacked':>10}" if attacked else ""
    for row in report["certified_accuracy"]:
        line = f"{row['radius']:>8.3f}{row['accuracy']:>11.4f}"
        if row["radius"] in attacked:
            line += f"{attacked[row['radius']]:>10.4f}"
        lines.append(line)
    return lines
