"""scikit-learn's bundled 8x8 digits: real data that needs no files, for quick checks and CI.

The split is fixed (first 1297 examples train, last 500 test) so that `digits`/`test` names
the same 500 images everywhere; spec.SPLIT_SIZES records it.
"""

from __future__ import annotations

import functools

import torch

from robustness.spec import SPLIT_SIZES

from .base import Source

TRAIN_SIZE = SPLIT_SIZES[("digits", "train")]


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[torch.Tensor, torch.Tensor, str]:
    import sklearn
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Pixels are integer counts 0..16; /16 puts them in [0, 1] exactly.
    x = torch.from_numpy(bunch.images).to(torch.float32).div_(16.0).unsqueeze(1)
    y = torch.from_numpy(bunch.target).to(torch.int64)
    return x, y, f"sklearn.datasets.load_digits (scikit-learn {sklearn.__version__})"


def digits_source(split: str) -> Source:
    x, y, origin = _digits()
    part = slice(0, TRAIN_SIZE) if split == "train" else slice(TRAIN_SIZE, None)
    x, y = x[part], y[part]
    return Source(size=int(y.shape[0]), labels=y, rows=lambda idx: x[idx].clone(),
                  path=origin, classes=[str(d) for d in range(10)])
