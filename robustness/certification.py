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
from robustness.models import ModelMetadata, load_model
from robustness.smoothing import Progress, auto_batch, certified_accuracy, certify_all
from robustness.spec import CertifySpec

KIND = "certification"


def certify_dataset(model, data, spec: CertifySpec, *, device=None,
                    progress: Progress | None = None, model_extra: dict | None = None) -> dict:
    check_model_fits_data(model, data)
    device = pick_device(device) if not isinstance(device, torch.device) else device
    num_classes = model.metadata.num_classes
    batch = spec.batch_size or auto_batch(tuple(data.x.shape[1:]), max(spec.n0, spec.n))
    result = certify_all(model, data.x, data.y, data.indices, sigma=spec.sigma, n0=spec.n0,
                         n=spec.n, alpha=spec.alpha, num_classes=num_classes,
                         batch_size=batch, seed=spec.seed, top_k=spec.top_k, device=device,
                         progress=progress)
    table = certified_accuracy(result, spec.radii)
    total = len(result.label)
    return {
        "kind": KIND,
        "model": {**model_info(model), **(model_extra or {})},
        "dataset": data.description,
        "spec": spec.model_dump(mode="json"),
        "certified_accuracy": table,
        # CERTIFY's prediction, not abstaining and right: the smoothed classifier's accuracy
        "clean_accuracy": table[0]["accuracy"] if spec.radii[0] == 0 else
        certified_accuracy(result, [0.0])[0]["accuracy"],
        "abstention_rate": sum(result.abstain) / total if total else 0.0,
        "per_class": _per_class(result, spec.radii, num_classes),
        "examples": {"index": result.index, "label": result.label, "pred": result.pred,
                     "abstain": result.abstain, "radius": result.radius,
                     "p_lower": result.p_lower, "count": result.count,
                     "top_classes": result.top_classes, "top_counts": result.top_counts},
        "cost": {"forward_passes": result.forward_passes,
                 "forward_passes_per_example": spec.n0 + spec.n, "batch_size": batch,
                 "seconds": result.seconds},
        "provenance": {
            "versions": versions(), "platform": f"{platform.system()} {platform.machine()}",
            "device": str(device), "threads": torch.get_num_threads(), "seed": spec.seed,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    }


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
    lines += [f"{row['radius']:>8.3f}{row['accuracy']:>11.4f}"
              for row in report["certified_accuracy"]]
    return lines
