"""What every data source hands to the loader, and what the loader hands to callers.

A source describes one whole split but converts rows to float only when asked: an audit of
100 MNIST images should not allocate 60000 float images, and an image folder should decode
only the files that were selected.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch


@dataclass(frozen=True)
class Source:
    """One split as stored.

    ``rows(indices)`` returns float32 [k, C, H, W] in [0, 1] for those positions, in that order.
    """

    size: int
    labels: torch.Tensor  # int64 [size]
    rows: Callable[[torch.Tensor], torch.Tensor]
    path: Path | str  # where it was read from (a description for non-file sources)
    classes: list[str] | None = None
    num_classes: int | None = None  # defaults to len(classes), else max label + 1


@dataclass
class LoadedData:
    """The selected examples, ready for a model, plus what a report needs to pin them."""

    x: torch.Tensor  # float32 [N, C, H, W] in [0, 1]
    y: torch.Tensor  # int64 [N]
    indices: torch.Tensor  # int64 [N]: positions in the split, for the report's examples.index
    num_classes: int
    classes: list[str] | None = None
    description: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.y.shape[0])


def digest(x: torch.Tensor, y: torch.Tensor) -> str:
    """sha256 of x as C-contiguous float32 bytes followed by y as int64 bytes (native order).

    Hashing what is attacked, not the source file, pins the exact inputs of a report whatever
    format they came from.
    """
    h = hashlib.sha256()
    h.update(x.detach().to(torch.float32).contiguous().numpy().tobytes())
    h.update(y.detach().to(torch.int64).contiguous().numpy().tobytes())
    return h.hexdigest()


def uint8_rows(data: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Row getter for uint8 [N, C, H, W] (or [N, H, W]) data; divides by 255 like ToTensor."""

    def rows(indices: torch.Tensor) -> torch.Tensor:
        picked = data[indices]
        if picked.ndim == 3:
            picked = picked.unsqueeze(1)
        return picked.to(torch.float32).div_(255.0)

    return rows
