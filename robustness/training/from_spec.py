"""A training from a spec: data, held-out slice, method, monitors, model card.

The CLI (`robustness train`) and the workers both call `train_from_spec` and `save_training`,
so a checkpoint and its card mean the same thing whichever entry point produced them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from robustness.data import load_dataset
from robustness.data.base import digest
from robustness.devices import pick_device
from robustness.errors import SpecError
from robustness.evaluation.report import versions
from robustness.memory import PeakMemory
from robustness.models import Classifier, ModelMetadata, build_model, save_state_dict
from robustness.models.loading import file_sha256
from robustness.training import methods
from robustness.training.fit import fit
from robustness.training.monitor import Monitor
from robustness.training.spec import ADVERSARIAL, TrainingSpec

MODEL_FILE = "model.safetensors"
CARD_FILE = "model.json"  # the sidecar `robustness audit --model DIR/model.safetensors` reads
TEACHER_FILE = "teacher.safetensors"

# progress(done, total, phase) like the audit's, so one progress bar serves both.
Progress = Callable[[int, int, str], None]


@dataclass
class TrainingResult:
    model: Classifier
    card: dict
    teacher: Classifier | None = None


def _split(spec: TrainingSpec, data):
    n_val = spec.validation.n
    if n_val >= len(data):
        raise SpecError(f"validation.n: {n_val} held-out examples leave none of the "
                        f"{len(data)} loaded to train on")
    cut = len(data) - n_val
    return (data.x[:cut], data.y[:cut]), (data.x[cut:], data.y[cut:])


def _metadata(spec: TrainingSpec, data) -> ModelMetadata:
    shape = list(data.x.shape[1:])
    if spec.input_shape is not None and list(spec.input_shape) != shape:
        raise SpecError(f"input_shape: {spec.input_shape} does not match the data's {shape}")
    num_classes = spec.num_classes or data.num_classes
    top = int(data.y.max()) if len(data) else -1
    if top >= num_classes:
        raise SpecError(f"num_classes: {num_classes} but the data has label {top}")
    labels = data.classes if data.classes and len(data.classes) == num_classes else None
    meta = ModelMetadata(name=spec.name or f"{spec.architecture}-{spec.method}",
                         architecture=spec.architecture, num_classes=num_classes,
                         input_shape=shape, preprocessing=spec.preprocessing, labels=labels)
    if meta.preprocessing is not None:
        try:
            meta.preprocessing.check_channels(shape[0])
        except ValueError as exc:
            raise SpecError(str(exc)) from None
    return meta


def _fresh(spec: TrainingSpec, meta: ModelMetadata, seed: int, device) -> Classifier:
    torch.manual_seed(seed)
    net = build_model(spec.architecture, meta.num_classes, meta.input_shape)
    return Classifier(net, meta).to(device)


@torch.no_grad()
def _softmax_at(teacher, x: torch.Tensor, temperature: float, device, batch: int = 1000):
    teacher.eval()
    return torch.cat([F.softmax(teacher(x[i:i + batch].to(device)) / temperature, 1).cpu()
                      for i in range(0, x.shape[0], batch)])


def _method_loss(spec: TrainingSpec, r: dict, generator: torch.Generator,
                 batches_per_epoch: int):
    if spec.method == "standard":
        return methods.standard
    if spec.method == "distillation":
        return methods.soft_labels(r["temperature"])
    if spec.method == "gaussian":
        return methods.gaussian(spec.sigma, generator)
    common = {"norm": spec.norm, "epsilon": spec.epsilon, "steps": spec.attack_steps,
              "step_size": spec.attack_step_size, "generator": generator,
              "warmup_steps": round(r["epsilon_warmup"] * batches_per_epoch)}
    if spec.method in ("fgsm", "pgd"):
        return methods.adversarial(random_start=r["random_start"], **common)
    return methods.trades(beta=r["beta"], **common)


def train_from_spec(spec: TrainingSpec, *, data_root=None, device=None,
                    teacher: Classifier | None = None, progress: Progress | None = None,
                    log: Callable[[dict], None] | None = None) -> TrainingResult:
    """Train the spec's model. `teacher` is an existing model for distillation (else one is
    trained here first); `log` sees each epoch's history entry as it is made. The card's
    provenance holds the training's peak memory (robustness.memory)."""
    device = pick_device(device)
    with PeakMemory(device) as memory:
        result = _train(spec, data_root, device, teacher, progress, log)
    result.card["provenance"]["memory"] = memory.figures()
    return result


def _train(spec: TrainingSpec, data_root, device, teacher, progress, log) -> TrainingResult:
    started = time.perf_counter()
    data = load_dataset(spec.dataset, data_root)
    (x, y), (x_val, y_val) = _split(spec, data)
    meta = _metadata(spec, data)
    resolved = spec.resolved()
    common = {"epochs": spec.epochs, "batch_size": spec.batch_size, "lr": spec.lr, "seed": spec.seed,
                  "schedule": spec.schedule, "optimizer": spec.optimizer,
                  "momentum": spec.momentum, "weight_decay": spec.weight_decay}
    card_teacher = None
    target = y
    if spec.method == "distillation":
        temperature = resolved["temperature"]
        if teacher is None:
            teacher, card_teacher = _train_teacher(spec, meta, x, y, x_val, y_val, common,
                                                   temperature, device, progress, log)
        else:
            _check_teacher(teacher, meta)
            card_teacher = {"trained_in_job": False, "sha256": teacher.sha256,
                            "name": teacher.metadata.name}
        target = _softmax_at(teacher, x, temperature, device)

    model = _fresh(spec, meta, spec.seed, device)
    monitor = Monitor(model, x_val, y_val, validation=spec.validation, norm=spec.norm,
                      epsilon=spec.monitor_epsilon, seed=spec.seed, device=device,
                      stop_on_collapse=spec.on_catastrophic_overfitting == "stop",
                      select_robust=spec.method in ADVERSARIAL,
                      watch_after=resolved.get("epsilon_warmup", 0.0))
    generator = torch.Generator().manual_seed(spec.seed + 1)

    def on_epoch(epoch, stats):
        stop = monitor(epoch, stats)
        if log:
            log({"phase": spec.method, **monitor.history[-1]})
        return stop

    batches = -(-x.shape[0] // spec.batch_size)
    fit(model, x, target, loss=_method_loss(spec, resolved, generator, batches), on_epoch=on_epoch,
        progress=(lambda d, t: progress(d, t, f"train:{spec.method}")) if progress else None,
        **common)
    selected = "last"
    if spec.checkpoint == "best" and monitor.best_state is not None:
        model.load_state_dict(monitor.best_state)
        selected = "best"
    model.eval()
    card = {
        "schema_version": 1,
        "metadata": meta.model_dump(exclude_none=True),
        "weights": {"file": MODEL_FILE, "format": "safetensors", "sha256": None},
        "training": {
            "spec": resolved,
            "method": spec.method,
            "epochs_run": len(monitor.history),
            "checkpoint": selected,
            "selected_epoch": monitor.best_epoch if selected == "best" else len(monitor.history),
            "selection_metric": ("pgd_accuracy" if monitor.select_robust else "clean_accuracy")
            if x_val.shape[0] else None,
            "validation": {"n": int(x_val.shape[0]), "epsilon": spec.monitor_epsilon,
                           "pgd_steps": spec.validation.steps,
                           "pgd_restarts": spec.validation.restarts,
                           "indices": _first_last(data.indices[len(x):])},
            "catastrophic_overfitting": monitor.collapse,
            "stopped_early": len(monitor.history) < spec.epochs,
            "history": monitor.history,
            "teacher": card_teacher,
            "dataset": {**data.description, "train_examples": int(x.shape[0]),
                        "train_sha256": digest(x, y)},
        },
        "provenance": {"versions": versions(), "device": str(device),
                       "threads": torch.get_num_threads(),
                       "seconds": round(time.perf_counter() - started, 3)},
    }
    return TrainingResult(model=model, card=card,
                          teacher=teacher if card_teacher and card_teacher.get(
                              "trained_in_job") else None)


def _first_last(indices: torch.Tensor) -> list[int]:
    """The held-out slice is contiguous, so its first and last split positions pin it."""
    return [int(indices[0]), int(indices[-1])] if indices.numel() else []


def _check_teacher(teacher: Classifier, meta: ModelMetadata) -> None:
    if teacher.metadata.num_classes != meta.num_classes or \
            list(teacher.metadata.input_shape) != list(meta.input_shape):
        raise SpecError(f"teacher: takes {list(teacher.metadata.input_shape)} with "
                        f"{teacher.metadata.num_classes} classes, but the student takes "
                        f"{meta.input_shape} with {meta.num_classes}")


def _train_teacher(spec, meta, x, y, x_val, y_val, common, temperature, device, progress, log):
    """Papernot et al.: the teacher is trained at temperature T on the hard labels."""
    teacher = _fresh(spec, meta, spec.seed + 1000, device)
    monitor = Monitor(teacher, x_val, y_val, validation=spec.validation, norm=spec.norm,
                      epsilon=None, seed=spec.seed, device=device)

    def on_epoch(epoch, stats):
        monitor(epoch, stats)
        if log:
            log({"phase": "teacher", **monitor.history[-1]})

    epochs = spec.teacher_epochs or spec.epochs
    fit(teacher, x, y, loss=methods.at_temperature(temperature), on_epoch=on_epoch,
        progress=(lambda d, t: progress(d, t, "train:teacher")) if progress else None,
        **{**common, "epochs": epochs})
    return teacher, {"trained_in_job": True, "epochs": epochs, "temperature": temperature,
                     "history": monitor.history, "file": TEACHER_FILE}


def save_training(result: TrainingResult, out_dir: str | Path) -> Path:
    """Write model.safetensors (metadata in its header), model.json (the card) and, when the
    job trained one, teacher.safetensors. Returns the checkpoint path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / MODEL_FILE
    save_state_dict(result.model, weights)
    result.card["weights"]["sha256"] = file_sha256(weights)
    if result.teacher is not None:
        save_state_dict(result.teacher, out / TEACHER_FILE)
        result.card["training"]["teacher"]["sha256"] = file_sha256(out / TEACHER_FILE)
    (out / CARD_FILE).write_text(json.dumps(result.card, indent=1))
    return weights
