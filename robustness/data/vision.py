"""The benchmark sets torchvision knows (MNIST, Fashion-MNIST, CIFAR-10/100, SVHN), offline only.

torchvision does the parsing and the MD5 checks, so the bytes we attack are the published ones.
It must never reach the network: before any ``download=True`` call every archive is present
and verified here, so torchvision only re-checks and unpacks. Missing files are a DataError
naming the files, the folder searched and how to point at another data root.

Decoded uint8 splits are cached per process (keyed by path and split): a worker running many
audits on MNIST parses the files once.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torchvision import datasets
from torchvision.datasets.utils import check_integrity

from robustness.errors import DataError
from robustness.paths import cache_dir

from .base import Source, uint8_rows

ROOT_HINT = "or point --data-root / ROBUSTNESS_DATA_ROOT at the folder that holds"

# ---------------------------------------------------------------------------------- MNIST family

_MNIST = {"mnist": (datasets.MNIST, "MNIST"),
          "fashion_mnist": (datasets.FashionMNIST, "Fashion-MNIST")}


def mnist_source(name: str, split: str, root: Path) -> Source:
    cls, _ = _MNIST[name]
    raw = root / cls.__name__ / "raw"
    data, targets = _mnist_arrays(name, str(raw), split == "train")
    return Source(size=int(targets.shape[0]), labels=targets, rows=uint8_rows(data), path=raw,
                  classes=list(cls.classes))


@functools.lru_cache(maxsize=8)
def _mnist_arrays(name: str, raw_dir: str, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [N, 28, 28] images and int64 labels of one split; cached per process."""
    cls, title = _MNIST[name]
    raw = Path(raw_dir)
    unpacked = [_strip_gz(f) for f, _ in cls.resources]
    if all((raw / f).is_file() for f in unpacked):
        # Unpacked files next to the archives (e.g. `gunzip -k` was run): read them in place.
        ds = _construct(cls, title, raw, root=raw.parent.parent, train=train)
    else:
        ds = _construct(cls, title, raw, root=_unpacked_mirror(cls, title, raw), train=train)
    return ds.data, ds.targets.to(torch.int64)


def _unpacked_mirror(cls, title: str, raw: Path) -> Path:
    """A writable root holding ``<Name>/raw/`` with the archives linked and unpacked.

    The shared data root may be read-only, so archives are symlinked into a cache folder and
    torchvision unpacks them there. Unpacking happens in a private temporary folder whose
    files are then renamed into place, so concurrent workers never read a half-written file.
    """
    missing = [f for f, _ in cls.resources if not (raw / f).is_file()]
    if missing:
        raise DataError(f"{title} files not found: expected {', '.join(missing)} in {raw}. "
                        f"Copy the {title} .gz files there, {ROOT_HINT} {cls.__name__}/raw/")
    # Checked even when the cache is already unpacked (once per process, ~0.1 s), so a corrupt
    # root is reported rather than masked by a cache filled from another root. A bad checksum
    # would also make torchvision fall back to downloading.
    _verify(raw, cls.resources, title)
    mirror_root = cache_dir("datasets")
    final = mirror_root / cls.__name__ / "raw"
    if all((final / _strip_gz(f)).is_file() for f, _ in cls.resources):
        return mirror_root
    tmp = Path(tempfile.mkdtemp(prefix=f".unpack-{cls.__name__}-", dir=mirror_root))
    try:
        tmp_raw = tmp / cls.__name__ / "raw"
        tmp_raw.mkdir(parents=True)
        for f, _ in cls.resources:
            _link(raw.resolve() / f, tmp_raw / f)
        # torchvision prints progress; keep stdout clean for reports written there. It also
        # parses one split after unpacking: the small test split, the caller re-reads its own.
        with contextlib.redirect_stdout(sys.stderr):
            _construct(cls, title, raw, root=tmp, train=False, download=True)
        final.mkdir(parents=True, exist_ok=True)
        for entry in os.listdir(tmp_raw):
            os.replace(tmp_raw / entry, final / entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return mirror_root


def _strip_gz(filename: str) -> str:
    return os.path.splitext(filename)[0]


def _link(target: Path, link: Path) -> None:
    try:
        os.symlink(target, link)
    except OSError:  # file systems without symlinks
        shutil.copyfile(target, link)


def _construct(cls, title: str, where: Path, **kwargs):
    try:
        return cls(**{k: str(v) if isinstance(v, Path) else v for k, v in kwargs.items()})
    except (RuntimeError, OSError, ValueError, KeyError) as exc:
        raise DataError(f"{where}: could not read {title}: {exc}") from exc


def _verify(folder: Path, files, title: str) -> None:
    """Name the first file whose MD5 is not the published one (torchvision only says
    "not found or corrupted" and suggests a download)."""
    for filename, md5 in files:
        if not check_integrity(str(folder / filename), md5):
            raise DataError(f"{folder / filename}: MD5 differs from the published checksum "
                            f"{md5}; the file is corrupt or not the {title} release")


# ------------------------------------------------------------------------------------ CIFAR

_CIFAR = {"cifar10": (datasets.CIFAR10, "CIFAR-10"), "cifar100": (datasets.CIFAR100, "CIFAR-100")}


def cifar_source(name: str, split: str, root: Path) -> Source:
    cls, title = _CIFAR[name]
    folder = root / cls.base_folder
    needed = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    missing = [f for f in needed if not (folder / f).is_file()]
    if missing:
        raise DataError(f"{title} files not found: missing {', '.join(missing)} in {folder}. "
                        f"Unpack {cls.filename} ({cls.url}) into {root}, "
                        f"{ROOT_HINT} {cls.base_folder}/")
    data, targets, classes = _cifar_arrays(name, str(root), split == "train")
    return Source(size=int(targets.shape[0]), labels=targets, rows=uint8_rows(data),
                  path=folder, classes=classes)


@functools.lru_cache(maxsize=4)
def _cifar_arrays(name: str, root: str, train: bool):
    # The batches are pickles; torchvision unpickles them only after their MD5s match the
    # published ones, so no file other than the original release is ever unpickled.
    cls, title = _CIFAR[name]
    folder = Path(root) / cls.base_folder
    _verify(folder, cls.train_list + cls.test_list + [[cls.meta["filename"], cls.meta["md5"]]],
            title)
    ds = _construct(cls, title, folder, root=root, train=train)
    data = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))  # NHWC -> NCHW
    return data, torch.as_tensor(ds.targets, dtype=torch.int64), list(ds.classes)


# ------------------------------------------------------------------------------------- SVHN

def svhn_source(split: str, root: Path) -> Source:
    folder = root / "svhn"
    filename = datasets.SVHN.split_list[split][1]
    if not (folder / filename).is_file():
        raise DataError(f"SVHN file not found: expected {filename} in {folder}. Download it from "
                        f"{datasets.SVHN.split_list[split][0]} into that folder, "
                        f"{ROOT_HINT} svhn/")
    data, labels = _svhn_arrays(str(folder), split)
    return Source(size=int(labels.shape[0]), labels=labels, rows=uint8_rows(data), path=folder,
                  classes=[str(d) for d in range(10)])


@functools.lru_cache(maxsize=4)
def _svhn_arrays(folder: str, split: str):
    _verify(Path(folder), [datasets.SVHN.split_list[split][1:]], "SVHN")
    ds = _construct(datasets.SVHN, "SVHN", Path(folder), root=folder, split=split)
    # torchvision already maps the file's label 10 to digit 0 and returns NCHW.
    return (torch.from_numpy(np.ascontiguousarray(ds.data)),
            torch.as_tensor(ds.labels, dtype=torch.int64))


def clear_cache() -> None:
    """Forget decoded splits (tests; or a worker that must re-read changed files)."""
    for fn in (_mnist_arrays, _cifar_arrays, _svhn_arrays):
        fn.cache_clear()
