"""A folder of class subfolders of images (torchvision ImageFolder / Tiny ImageNet layout).

Layout: ``<path>/<split>/<class>/*.png``; a ``<path>`` that holds class folders directly (no
split folders) is used for either split. Headers of all images are read up front, because one
batch needs one shape: every image must have the same width and height. Grayscale images
stay 1 channel; if any image is in colour, all are converted to RGB, so the channel count
does not depend on which examples were selected. Only selected images are decoded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.datasets import ImageFolder

from robustness.errors import DataError

from .base import Source

_GRAY_MODES = {"1", "L", "LA", "I;16", "I;16L", "I;16B", "I;16N"}
_16BIT = {"I;16", "I;16L", "I;16B", "I;16N"}


def split_dir(base: Path, split: str) -> Path:
    """``base/split`` when it exists, else ``base`` itself if it holds class folders."""
    if not base.is_dir():
        raise DataError(f"dataset.path: image folder {base} does not exist (expected "
                        f"{base}/{split}/<class>/<image>)")
    if (base / split).is_dir():
        return base / split
    other = "train" if split == "test" else "test"
    if (base / other).is_dir():
        raise DataError(f"dataset.split: {base} has no '{split}' folder (only '{other}'); "
                        f"expected {base}/{split}/<class>/<image>")
    return base


def imagefolder_source(base: Path, split: str) -> Source:
    folder = split_dir(base, split)
    try:
        listing = ImageFolder(str(folder))
    except (FileNotFoundError, OSError) as exc:
        raise DataError(f"dataset.path: {folder} is not an image folder "
                        f"(<class>/<image> files): {exc}") from exc
    files = [Path(p) for p, _ in listing.samples]
    size, channels = _scan(files)
    labels = torch.tensor([t for _, t in listing.samples], dtype=torch.int64)

    def rows(indices: torch.Tensor) -> torch.Tensor:
        out = torch.empty((len(indices), channels, size[1], size[0]), dtype=torch.float32)
        for row, i in enumerate(indices.tolist()):
            out[row] = _decode(files[i], channels)
        return out

    return Source(size=len(files), labels=labels, rows=rows, path=folder,
                  classes=list(listing.classes))


def _scan(files: list[Path]) -> tuple[tuple[int, int], int]:
    """Common (width, height) of all images and the channel count (1 if all are grayscale)."""
    size = None
    gray = True
    for path in files:
        try:
            with Image.open(path) as img:
                img_size, mode = img.size, img.mode
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"dataset.path: cannot read image {path}: {exc}") from exc
        if size is None:
            size, first = img_size, path
        elif img_size != size:
            raise DataError(f"dataset.path: image {path} is {img_size[0]}x{img_size[1]} but "
                            f"{first} is {size[0]}x{size[1]}; all images must share one size")
        gray = gray and mode in _GRAY_MODES
    return size, 1 if gray else 3


def _decode(path: Path, channels: int) -> torch.Tensor:
    with Image.open(path) as img:
        if img.mode in _16BIT:
            scaled = np.asarray(img, dtype=np.float32) / 65535.0
            if channels == 1:
                return torch.from_numpy(scaled).unsqueeze(0)
            img = Image.fromarray(np.round(scaled * 255).astype(np.uint8))
        img = img.convert("L" if channels == 1 else "RGB")  # drops alpha, expands palettes
        array = np.asarray(img, dtype=np.uint8)
    tensor = torch.from_numpy(array.copy()).to(torch.float32).div_(255.0)
    return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1)
