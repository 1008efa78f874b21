"""``load_dataset``: one call from a DatasetSpec to the tensors an audit or a training uses."""

from __future__ import annotations

import os
from pathlib import Path

from robustness.errors import DataError
from robustness.paths import data_root
from robustness.spec import SPLIT_SIZES, DatasetSpec

from .base import LoadedData, Source, digest
from .digits import digits_source
from .imagefolder import imagefolder_source
from .selection import select_indices
from .tensors import tensors_source
from .vision import cifar_source, mnist_source, svhn_source


def load_dataset(spec: DatasetSpec, root: str | os.PathLike | None = None) -> LoadedData:
    """Load the examples ``spec`` selects, as float32 [N, C, H, W] in [0, 1] and int64 labels.

    ``root`` is the data root (else ROBUSTNESS_DATA_ROOT, else ``$ROBUSTNESS_HOME/data``).
    Raises DataError, naming the file or spec field to fix, when data is missing or malformed.
    """
    base = data_root(root)
    source = _source(spec, base)
    split = None if spec.name == "tensors" else spec.split
    where = f"the {split} split of {spec.name}" if split else f"{source.path}"
    indices = select_indices(source.size, spec.n, spec.offset, spec.seed, where=where)
    x = source.rows(indices)
    y = source.labels[indices].clone()
    num_classes = source.num_classes or (len(source.classes) if source.classes
                                         else int(source.labels.max()) + 1)
    description = {
        "name": spec.name,
        "split": split,
        "n": int(indices.shape[0]),
        "offset": spec.offset,
        "seed": spec.seed,
        "path": _shown(source.path, base),
        "split_size": source.size,
        "shape": list(x.shape[1:]),
        "num_classes": num_classes,
        "sha256": digest(x, y),
    }
    return LoadedData(x=x, y=y, indices=indices, num_classes=num_classes,
                      classes=source.classes, description=description)


def _source(spec: DatasetSpec, base: Path) -> Source:
    name = spec.name
    if name in ("mnist", "fashion_mnist"):
        source = mnist_source(name, spec.split, base)
    elif name in ("cifar10", "cifar100"):
        source = cifar_source(name, spec.split, base)
    elif name == "svhn":
        source = svhn_source(spec.split, base)
    elif name == "digits":
        source = digits_source(spec.split)
    elif name == "imagefolder":
        source = imagefolder_source(_user_path(base, spec.path), spec.split)
    elif name == "tensors":
        source = tensors_source(_user_path(base, spec.path))
    else:  # DatasetSpec's Literal makes this unreachable
        raise AssertionError(name)
    expected = SPLIT_SIZES.get((name, spec.split))
    if expected is not None and expected != source.size:
        raise DataError(f"{source.path}: the {spec.split} split of {name} has {source.size} "
                        f"examples, not the published {expected}; the files are not the "
                        f"original release")
    return source


def _shown(path, base: Path) -> str:
    """A source's path as reports show it: relative to the data root when under it, so that a
    report says which files were read without disclosing the server's folders."""
    try:
        return str(Path(path).relative_to(base))
    except ValueError:  # not a file under the root (digits), or a library user's own path
        return str(path)


def _user_path(base: Path, path: str | None) -> Path:
    """``path`` as given when absolute, else under the data root."""
    p = Path(path or "").expanduser()
    return p if p.is_absolute() else base / p
