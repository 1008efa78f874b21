"""``load_model``: any accepted checkpoint file -> a validated :class:`Classifier`.

Every load ends with a forward pass on a zeros batch, so a model that cannot run, returns the
wrong number of classes or produces NaN is rejected at registration with a message, instead of
failing an audit hours later.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from robustness.devices import pick_device
from robustness.errors import ModelLoadError
from robustness.models import formats
from robustness.models.metadata import ModelMetadata
from robustness.models.registry import build_model, default_input_shape
from robustness.models.safety import check_exported_archive, check_torchscript
from robustness.models.state_dicts import (
    load_into,
    non_finite_tensors,
    read_safetensors,
    read_torch_state_dict,
    strip_prefixes,
)
from robustness.models.wrapper import Classifier

_DYNAMIC_BATCH_HINT = ("if it was exported with a fixed batch size, export it with a dynamic "
                       "batch dimension: torch.export.export(model, (x,), dynamic_shapes="
                       "({0: torch.export.Dim('batch')},))")


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def load_model(path: str | os.PathLike, metadata: ModelMetadata | dict | None = None,
               device: str | torch.device | None = None) -> Classifier:
    """Load a checkpoint safely, wrap it with its preprocessing and check that it runs.

    Raises :class:`ModelLoadError` with a user-facing message for anything that is not a
    loadable, consistent classifier.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    meta = ModelMetadata.parse(metadata)
    device = pick_device(str(device)) if device is not None else pick_device()
    fmt = formats.detect_format(path)

    graph_shape = None
    if fmt == formats.EXPORTED_PROGRAM:
        data = path.read_bytes()  # scanned and loaded from the same bytes
        sha256 = hashlib.sha256(data).hexdigest()
        net, graph_shape = _load_exported(data)
    else:
        sha256 = file_sha256(path)
        if fmt == formats.TORCHSCRIPT:
            net = _load_torchscript(path, device)
        else:
            net, meta = _load_weights_only(path, fmt, meta)

    input_shape = meta.input_shape or graph_shape
    if input_shape is None:
        raise ModelLoadError(f"metadata.input_shape ([C, H, W] of one input) is required for "
                             f"{fmt} models")
    meta = _with(meta, input_shape=list(input_shape))

    bad = non_finite_tensors(net)
    if bad:
        raise ModelLoadError(f"checkpoint has NaN or Inf values in {len(bad)} tensor(s): "
                             f"{', '.join(bad[:20])}")

    clf = Classifier(net, meta, format=fmt, sha256=sha256,
                     fixed_mode=fmt == formats.EXPORTED_PROGRAM)
    clf.to(device)
    clf.eval()
    for p in clf.parameters():
        p.requires_grad_(False)

    num_classes = _check_forward(clf, fmt, device)
    if meta.num_classes is not None and num_classes != meta.num_classes:
        raise ModelLoadError(f"model outputs {num_classes} classes but metadata says "
                             f"num_classes={meta.num_classes}")
    clf.metadata = _with(meta, num_classes=num_classes)
    return clf


def _with(meta: ModelMetadata, **updates) -> ModelMetadata:
    """A re-validated copy, so e.g. labels are checked against an inferred num_classes."""
    return ModelMetadata.parse({**meta.model_dump(exclude_none=True), **updates})


def _load_weights_only(path: Path, fmt: str, meta: ModelMetadata) -> tuple[nn.Module, ModelMetadata]:
    if fmt == formats.SAFETENSORS:
        state, stored = read_safetensors(path)
        if stored is not None:  # written by save_state_dict; the caller's fields win
            meta = ModelMetadata.parse({**stored.model_dump(exclude_none=True),
                                        **meta.model_dump(exclude_none=True)})
    else:
        state = read_torch_state_dict(path)
    if not meta.architecture:
        raise ModelLoadError(f"metadata.architecture is required for {fmt} checkpoints (they "
                             f"hold weights only); e.g. madry_mnist, preact_resnet18, "
                             f"torchvision:resnet18")
    if meta.num_classes is None:
        raise ModelLoadError(f"metadata.num_classes is required for {fmt} checkpoints")
    shape = meta.input_shape or default_input_shape(meta.architecture)
    net = build_model(meta.architecture, meta.num_classes, shape)
    if shape is not None:
        meta = _with(meta, input_shape=list(shape))
    load_into(net, strip_prefixes(state), meta.architecture)
    return net, meta


def _load_torchscript(path: Path, device: torch.device) -> nn.Module:
    check_torchscript(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit is deprecated upstream since 2.14
            return torch.jit.load(str(path), map_location=device)
    except Exception as exc:  # noqa: BLE001 - untrusted input: any failure is a user error
        raise ModelLoadError(f"cannot load TorchScript archive: {str(exc)[:500]}") from None


def _load_exported(data: bytes) -> tuple[nn.Module, tuple[int, int, int] | None]:
    check_exported_archive(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.load(io.BytesIO(data))
            return program.module(), _exported_input_shape(program)
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - untrusted input: any failure is a user error
        raise ModelLoadError(f"cannot load torch.export archive: {str(exc)[:500]}") from None


def _exported_input_shape(program) -> tuple[int, int, int] | None:
    """[C, H, W] from the program's single image input, when those dims are static."""
    user_inputs = list(program.graph_signature.user_inputs)
    if len(user_inputs) != 1:
        raise ModelLoadError(f"exported program takes {len(user_inputs)} inputs; a classifier "
                             f"takes one image batch")
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name == user_inputs[0]:
            val = node.meta.get("val")
            dims = tuple(getattr(val, "shape", ()))
            if len(dims) == 4 and all(isinstance(d, int) for d in dims[1:]):
                return tuple(int(d) for d in dims[1:])
    return None


def _check_forward(clf: Classifier, fmt: str, device: torch.device) -> int:
    """Run a zeros batch of 2; return the number of classes."""
    x = torch.zeros(2, *clf.metadata.input_shape, device=device)
    try:
        with torch.no_grad():
            out = clf.net(((x - clf.mean) / clf.std).to(clf.net_dtype))
    except Exception as exc:  # noqa: BLE001 - untrusted input: any failure is a user error
        msg = (f"model failed on a batch of 2 inputs of shape {clf.metadata.input_shape}: "
               f"{type(exc).__name__}: {str(exc).strip()[:600]}")
        if fmt == formats.EXPORTED_PROGRAM:
            msg += f" ({_DYNAMIC_BATCH_HINT})"
        raise ModelLoadError(msg) from None
    if not isinstance(out, torch.Tensor):
        raise ModelLoadError(f"model returns a {type(out).__name__}; it must return one logits "
                             f"tensor of shape [batch, num_classes]")
    if out.dim() != 2 or out.shape[0] != 2:
        raise ModelLoadError(f"model output has shape {list(out.shape)} for a batch of 2; "
                             f"expected logits of shape [2, num_classes]")
    if not bool(torch.isfinite(out).all()):
        raise ModelLoadError("model outputs NaN or Inf on an all-zeros input batch")
    return int(out.shape[1])
