"""One audit from files: load the data and the model, check they fit, run the ε-sweep.

The CLI and the workers both call `audit_model_file`, so a report means the same thing
whichever entry point produced it.
"""

from __future__ import annotations

from pathlib import Path

from robustness.data import load_dataset
from robustness.devices import pick_device
from robustness.errors import SpecError
from robustness.evaluation import AuditResult, run_audit
from robustness.models import ModelMetadata, load_model
from robustness.spec import AuditSpec


def model_info(model) -> dict:
    meta = model.metadata
    return {"name": meta.name, "architecture": meta.architecture, "format": model.format,
            "sha256": model.sha256, "num_classes": meta.num_classes,
            "input_shape": list(meta.input_shape) if meta.input_shape else None,
            "preprocessing": meta.preprocessing.model_dump() if meta.preprocessing else None}


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


def audit_model_file(spec: AuditSpec, model_path: str | Path,
                     metadata: ModelMetadata | None = None, *, data_root=None, device=None,
                     progress=None, collect_adversarial: bool = False) -> AuditResult:
    device = pick_device(device)
    data = load_dataset(spec.dataset, data_root)
    if metadata is None:
        metadata = ModelMetadata()
    if metadata.input_shape is None:
        # Graph formats need no architecture; the data tells the input shape.
        metadata = metadata.model_copy(update={"input_shape": list(data.x.shape[1:])})
    model = load_model(model_path, metadata, device=device)
    check_model_fits_data(model, data)
    return run_audit(model, data, spec, device=device, progress=progress,
                     collect_adversarial=collect_adversarial, model_info=model_info(model))
