"""Weights-only checkpoints: reading, matching against an architecture, writing.

A mismatch is reported all at once (missing keys, unexpected keys, every shape difference)
because a user fixing metadata wants to see the whole picture, not one key per upload.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustness.errors import ModelLoadError
from robustness.models.formats import safetensors_header_length
from robustness.models.metadata import ModelMetadata
from robustness.models.safety import safe_torch_load

# Key under which save_state_dict stores ModelMetadata in the safetensors header.
HEADER_KEY = "robustness.metadata"
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
_MAX_LISTED = 20


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def extract_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """A plain state_dict, or one under the keys training scripts commonly use."""
    if _is_state_dict(obj):
        return dict(obj)
    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            if _is_state_dict(obj.get(key)):
                return dict(obj[key])
        keys = ", ".join(repr(k) for k in list(obj)[:10])
        raise ModelLoadError(f"checkpoint is a dict without a state_dict: top-level keys "
                             f"{keys}; expected a dict of tensors or one under "
                             f"{', '.join(_WRAPPER_KEYS)}")
    raise ModelLoadError(f"checkpoint holds a {type(obj).__name__}, not a state_dict "
                         f"(a dict of parameter names to tensors)")


def strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop a ``module.`` (DataParallel) or ``net.`` (wrapper) prefix shared by every key."""
    while True:
        for prefix in ("module.", "net."):
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                break
        else:
            return state


def _shape(t: torch.Tensor | torch.Size) -> str:
    return "[" + ",".join(str(d) for d in (t.shape if isinstance(t, torch.Tensor) else t)) + "]"


def _listing(keys: list[str]) -> str:
    more = f", ... ({len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
    return ", ".join(keys[:_MAX_LISTED]) + more


def load_into(net: nn.Module, state: dict[str, torch.Tensor], architecture: str) -> None:
    """Strict load that names every missing key, unexpected key and shape mismatch."""
    expected = net.state_dict()
    # BatchNorm fills in its step counter when absent, as torch's own strict load does.
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k}: checkpoint {_shape(state[k])}, {architecture} expects {_shape(v)}"
              for k, v in expected.items() if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if shapes:
        problems.append("shape mismatches: " + "; ".join(shapes))
    if problems:
        raise ModelLoadError(f"checkpoint does not match architecture {architecture} (check "
                             f"architecture, num_classes and input_shape in the metadata): "
                             + " | ".join(problems))
    try:
        net.load_state_dict(state, strict=True)
    except Exception as exc:  # noqa: BLE001 - untrusted input: any failure is a user error
        raise ModelLoadError(f"cannot load the checkpoint into {architecture}: "
                             f"{str(exc)[:500]}") from None


def non_finite_tensors(net: nn.Module) -> list[str]:
    return [k for k, v in net.state_dict().items()
            if isinstance(v, torch.Tensor) and v.is_floating_point()
            and not bool(torch.isfinite(v).all())]


def read_torch_state_dict(path: Path) -> dict[str, torch.Tensor]:
    return extract_state_dict(safe_torch_load(str(path), "the checkpoint"))


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], ModelMetadata | None]:
    """Tensors plus any ModelMetadata that :func:`save_state_dict` stored in the header."""
    import safetensors.torch

    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(9)
        n = safetensors_header_length(head)
        if n is None or 8 + n > size:
            raise ModelLoadError(f"truncated safetensors file: its header says {n} bytes of "
                                 f"JSON but the file has {size} bytes")
        f.seek(8)
        header_text = f.read(n)
    try:
        header = json.loads(header_text)
        state = safetensors.torch.load_file(str(path), device="cpu")
    except Exception as exc:  # noqa: BLE001 - untrusted input: any failure is a user error
        raise ModelLoadError(f"corrupt or truncated safetensors file: {str(exc)[:300]}") from None
    stored = (header.get("__metadata__") or {}).get(HEADER_KEY)
    return state, (ModelMetadata.parse(stored) if stored else None)


def save_state_dict(net: nn.Module, path: str | os.PathLike,
                    metadata: ModelMetadata | dict | None = None) -> None:
    """Write ``net``'s weights as safetensors (never pickle), optionally with its metadata.

    A :class:`~robustness.models.wrapper.Classifier` is unwrapped: its preprocessing belongs
    in metadata, not in the architecture's weights. Tensors are cloned contiguous on CPU, which
    also breaks the storage sharing (tied weights) that safetensors refuses.
    """
    import safetensors.torch

    inner = getattr(net, "net", None)
    if isinstance(inner, nn.Module) and hasattr(net, "metadata"):
        metadata = metadata if metadata is not None else net.metadata
        net = inner
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in net.state_dict().items()}
    header = None
    if metadata is not None:
        header = {HEADER_KEY: ModelMetadata.parse(metadata).model_dump_json(exclude_none=True)}
    safetensors.torch.save_file(tensors, str(path), metadata=header)
