"""The audit entry point: `audit(model, data, spec)` is the one function the CLI, the workers
and the studies call, so a report means the same thing whichever of them produced it.

`audit_model_file` is the file-level convenience around it (load the data, then the model
with the input shape the data tells, then `audit`); the worker does the same two loads
through its caches, with the same `metadata_for_data`.
"""

from __future__ import annotations

from pathlib import Path

from robustness.data import load_dataset
from robustness.devices import pick_device
from robustness.errors import SpecError
from robustness.evaluation import AuditResult, Progress, run_sweep
from robustness.models import ModelMetadata, load_model
from robustness.spec import AuditSpec


def model_info(model) -> dict:
    meta = model.metadata
    return {"name": meta.name, "architecture": meta.architecture, "format": model.format,
            "sha256": model.sha256, "num_classes": meta.num_classes,
            "input_shape": list(meta.input_shape) if meta.input_shape else None,
            "preprocessing": meta.preprocessing.model_dump() if meta.preprocessing else None,
            "labels": meta.labels}


def training_recipe(card: dict | None, job_id: str | None = None) -> dict | None:
    """What a report's model card says about how the model was trained here (its model card's
    `training`), or None for a model trained elsewhere."""
    t = (card or {}).get("training")
    if not t:
        return None
    spec = t.get("spec") or {}
    recipe = {"method": t.get("method"), "epsilon": spec.get("epsilon"),
              "norm": spec.get("norm"), "epochs_run": t.get("epochs_run"),
              "checkpoint": t.get("checkpoint"), "selected_epoch": t.get("selected_epoch"),
              "catastrophic_overfitting": t.get("catastrophic_overfitting")}
    if job_id:
        recipe["job_id"] = job_id
    return recipe


def check_model_fits_data(model, data) -> None:
    expected = list(model.metadata.input_shape)
    got = list(data.x.shape[1:])
    if expected != got:
        raise SpecError(f"dataset: {data.description.get('name')} gives inputs {got} but the "
                        f"model expects input_shape {expected}")
    top = int(data.y.max()) if data.y.numel() else -1
    if top >= model.metadata.num_classes:
        raise SpecError(f"dataset: label {top} is out of range for a model with "
                        f"num_classes={model.metadata.num_classes}")


def metadata_for_data(metadata: ModelMetadata | None, data) -> ModelMetadata:
    """Graph formats need no architecture or input shape: the data tells the input shape."""
    metadata = metadata or ModelMetadata()
    if metadata.input_shape is None:
        return metadata.model_copy(update={"input_shape": list(data.x.shape[1:])})
    return metadata


def audit(model, data, spec: AuditSpec, *, device=None, progress: Progress | None = None,
          collect_adversarial: bool = False, model_extra: dict | None = None,
          batch_limit: int | None = None) -> AuditResult:
    """Audit a loaded classifier (`robustness.models.Classifier`) on loaded data.
    `model_extra` adds to the report's `model` record (the service adds the model's id);
    `batch_limit` bounds the batch chosen for a spec without one (a service's largest)."""
    check_model_fits_data(model, data)
    return run_sweep(model, data, spec, device=device, progress=progress,
                     collect_adversarial=collect_adversarial,
                     model_info={**model_info(model), **(model_extra or {})},
                     batch_limit=batch_limit)


def audit_model_file(spec: AuditSpec, model_path: str | Path,
                     metadata: ModelMetadata | None = None, *, data_root=None, device=None,
                     progress: Progress | None = None,
                     collect_adversarial: bool = False,
                     model_extra: dict | None = None) -> AuditResult:
    device = pick_device(device)
    data = load_dataset(spec.dataset, data_root)
    model = load_model(model_path, metadata_for_data(metadata, data), device=device)
    return audit(model, data, spec, device=device, progress=progress,
                 collect_adversarial=collect_adversarial, model_extra=model_extra)
