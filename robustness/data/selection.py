"""Which positions of a split an audit or training run takes (deterministic, reportable)."""

from __future__ import annotations

import torch

from robustness.errors import DataError


def select_indices(size: int, n: int | None = None, offset: int = 0, seed: int | None = None,
                   where: str = "the split") -> torch.Tensor:
    """Positions (int64) of the examples to take from a split of ``size`` examples.

    Without ``seed``: ``n`` consecutive positions from ``offset`` (all remaining when ``n`` is
    None), so a report's indices line up with the data set's own order.

    With ``seed``: ``n`` distinct positions drawn from the whole split by ``torch.randperm``
    on a CPU generator seeded with ``seed``, keeping the first ``n`` of the permutation and
    returning them **sorted ascending**. Sorting keeps reports easy to read and file access
    sequential; taking a prefix of one permutation means a larger ``n`` with the same seed is a
    superset of a smaller one. ``offset`` must be 0 then (DatasetSpec enforces it).

    ``where`` names the split in error messages (sizes of some data sets are known only here).
    """
    if size <= 0:
        raise DataError(f"{where} is empty: there is nothing to select")
    if offset < 0 or (n is not None and n <= 0):
        raise DataError(f"dataset.n / dataset.offset: need n > 0 and offset >= 0 "
                        f"(got n={n}, offset={offset})")
    if seed is not None:
        if offset:
            raise DataError("dataset.offset: cannot be combined with dataset.seed (a seeded "
                            "sample is drawn from the whole split)")
        if n is not None and n > size:
            raise DataError(f"dataset.n: cannot sample {n} distinct examples from {where} "
                            f"({size} examples)")
        generator = torch.Generator().manual_seed(seed)
        perm = torch.randperm(size, generator=generator)
        return perm[: size if n is None else n].sort().values
    if offset >= size:
        raise DataError(f"dataset.offset: {offset} is beyond {where} ({size} examples)")
    if n is not None and offset + n > size:
        raise DataError(f"dataset.n: {n} from offset {offset} exceeds {where} "
                        f"({size} examples)")
    stop = size if n is None else offset + n
    return torch.arange(offset, stop, dtype=torch.int64)
