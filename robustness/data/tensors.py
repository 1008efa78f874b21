"""A user's own examples in one file: ``.npz`` or ``.safetensors`` holding ``x`` and ``y``.

Both formats are plain arrays, so loading never runs code: npz is read with
``allow_pickle=False`` (object arrays are refused) and safetensors has no pickle at all.
The format is detected from the content, not the name, so a misnamed file still loads and
a disguised pickle does not.

- ``x``: [N, C, H, W], uint8 (divided by 255) or float already in [0, 1].
- ``y``: integer labels [N], >= 0.
- ``classes`` (optional): class names; in npz a string array, in safetensors a JSON list in
  the file's metadata (``safetensors.torch.save_file(..., metadata={"classes": json})``).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import torch

from robustness.errors import DataError

from .base import Source


def tensors_source(path: Path) -> Source:
    if not path.is_file():
        raise DataError(f"dataset.path: file {path} not found (an .npz or .safetensors file "
                        f"with arrays x and y; a relative path is read under the data root)")
    kind = detect_format(path)
    if kind == "npz":
        x, y, classes = _read_npz(path)
    else:
        x, y, classes = _read_safetensors(path)
    x, y = _check(path, x, y, classes)
    num_classes = len(classes) if classes else int(y.max()) + 1

    def rows(indices: torch.Tensor) -> torch.Tensor:
        picked = x[indices]
        return picked.to(torch.float32).div_(255.0) if picked.dtype == torch.uint8 \
            else picked.to(torch.float32)

    return Source(size=int(y.shape[0]), labels=y, rows=rows, path=path, classes=classes,
                  num_classes=num_classes)


def detect_format(path: Path) -> str:
    """'npz' (a zip archive) or 'safetensors' (8-byte header length, then a JSON header)."""
    with open(path, "rb") as f:
        head = f.read(9)
    size = path.stat().st_size
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "npz"
    if len(head) == 9 and head[8:9] == b"{" and 8 + int.from_bytes(head[:8], "little") <= size:
        return "safetensors"
    if head[:6] == b"\x93NUMPY":
        raise DataError(f"dataset.path: {path} is a single .npy array; save x and y together "
                        f"with numpy.savez(path, x=..., y=...)")
    raise DataError(f"dataset.path: {path} is neither an .npz nor a .safetensors file")


def _read_npz(path: Path):
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"dataset.path: cannot read {path} as .npz: {exc}") from exc
    with archive:
        arrays = {}
        for key in ("x", "y", "classes"):
            if key not in archive.files:
                if key == "classes":
                    continue
                raise DataError(f"dataset.path: {path} has no array '{key}' "
                                f"(found: {', '.join(archive.files) or 'none'})")
            try:
                arrays[key] = archive[key]
            except ValueError as exc:  # object arrays need pickle
                raise DataError(f"dataset.path: {path}: array '{key}' is a pickled object "
                                f"array, which is refused; store plain numeric arrays "
                                f"({exc})") from exc
            except (OSError, zipfile.BadZipFile) as exc:
                raise DataError(f"dataset.path: {path}: cannot read array '{key}': {exc}") \
                    from exc
    classes = arrays.get("classes")
    if classes is not None:
        if classes.ndim != 1 or classes.dtype.kind not in "US":
            raise DataError(f"dataset.path: {path}: 'classes' must be a 1-D array of strings")
        classes = [c.decode() if isinstance(c, bytes) else str(c) for c in classes.tolist()]
    return _to_tensor(path, "x", arrays["x"]), _to_tensor(path, "y", arrays["y"]), classes


def _to_tensor(path: Path, key: str, array: np.ndarray) -> torch.Tensor:
    if array.dtype.kind not in "biuf":
        raise DataError(f"dataset.path: {path}: array '{key}' has dtype {array.dtype}; "
                        f"expected numbers")
    return torch.from_numpy(np.ascontiguousarray(array))


def _read_safetensors(path: Path):
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            for key in ("x", "y"):
                if key not in keys:
                    raise DataError(f"dataset.path: {path} has no tensor '{key}' "
                                    f"(found: {', '.join(sorted(keys)) or 'none'})")
            x, y = f.get_tensor("x"), f.get_tensor("y")
            metadata = f.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise DataError(f"dataset.path: cannot read {path} as .safetensors: {exc}") from exc
    classes = None
    if "classes" in metadata:
        try:
            classes = json.loads(metadata["classes"])
        except json.JSONDecodeError as exc:
            raise DataError(f"dataset.path: {path}: metadata 'classes' is not JSON: {exc}") \
                from exc
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise DataError(f"dataset.path: {path}: metadata 'classes' must be a JSON list "
                            f"of strings")
    return x, y, classes


def _check(path: Path, x: torch.Tensor, y: torch.Tensor, classes: list[str] | None):
    where = f"dataset.path: {path}:"
    if x.ndim != 4:
        hint = " (add a channel axis: x[:, None])" if x.ndim == 3 else ""
        raise DataError(f"{where} 'x' has shape {list(x.shape)}; expected [N, C, H, W]{hint}")
    if x.shape[1] not in (1, 3, 4) and x.shape[3] in (1, 3, 4):
        raise DataError(f"{where} 'x' has shape {list(x.shape)}, which looks like "
                        f"[N, H, W, C]; expected [N, C, H, W] (x.transpose(0, 3, 1, 2))")
    if x.dtype == torch.bool or (not x.dtype.is_floating_point and x.dtype != torch.uint8):
        raise DataError(f"{where} 'x' has dtype {x.dtype}; expected uint8 (0..255) or "
                        f"float in [0, 1]")
    if x.dtype.is_floating_point and x.numel():
        if not torch.isfinite(x).all():
            raise DataError(f"{where} 'x' contains NaN or infinite values")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 1:
            raise DataError(f"{where} 'x' values range from {lo:.6g} to {hi:.6g}; float "
                            f"images must lie in [0, 1] (or store uint8 0..255)")
    if y.ndim != 1:
        raise DataError(f"{where} 'y' has shape {list(y.shape)}; expected integer labels [N]")
    if y.dtype.is_floating_point or y.dtype == torch.bool or y.dtype.is_complex:
        raise DataError(f"{where} 'y' has dtype {y.dtype}; expected integer labels")
    if y.shape[0] != x.shape[0]:
        raise DataError(f"{where} 'y' has {y.shape[0]} labels but 'x' has {x.shape[0]} "
                        f"examples")
    if x.shape[0] == 0:
        raise DataError(f"{where} 'x' holds no examples")
    y = y.to(torch.int64)
    if int(y.min()) < 0:
        raise DataError(f"{where} 'y' has negative label {int(y.min())}")
    if classes is not None and int(y.max()) >= len(classes):
        raise DataError(f"{where} 'y' has label {int(y.max())} but 'classes' names only "
                        f"{len(classes)} classes")
    return x, y
