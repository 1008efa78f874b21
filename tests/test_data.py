"""robustness.data: real values from the offline MNIST/Fashion-MNIST files and sklearn digits,
round trips through image folders and tensor files, and the messages users see on bad input."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from robustness.data import clear_cache, digest, load_dataset, select_indices
from robustness.errors import DataError
from robustness.spec import DatasetSpec

MNIST_TRAIN_HISTOGRAM = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_HISTOGRAM = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def spec(**kw) -> DatasetSpec:
    return DatasetSpec(**kw)


# ------------------------------------------------------------------------------- MNIST family

@pytest.mark.mnist
def test_mnist_first_test_examples(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTNESS_HOME", str(tmp_path))
    clear_cache()  # force the unpack into this test's cache
    data = load_dataset(spec(name="mnist", n=10), data_root)
    assert data.y.tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert data.x.shape == (10, 1, 28, 28) and data.x.dtype == torch.float32
    assert data.y.dtype == torch.int64 and data.indices.tolist() == list(range(10))
    assert float(data.x.min()) == 0.0 and float(data.x.max()) == 1.0
    assert data.num_classes == 10 and len(data.classes) == 10
    d = data.description
    assert (d["name"], d["split"], d["n"], d["offset"], d["seed"]) == ("mnist", "test", 10, 0, None)
    assert d["split_size"] == 10000 and d["shape"] == [1, 28, 28]
    assert d["path"] == "MNIST/raw"  # relative to the data root: reports hide server folders
    assert d["sha256"] == digest(data.x, data.y) and len(d["sha256"]) == 64
    # Unpacked into the writable cache, next to links to the archives; the root is untouched.
    mirror = tmp_path / "cache" / "datasets" / "MNIST" / "raw"
    assert (mirror / "t10k-images-idx3-ubyte").stat().st_size == 7840016
    assert (mirror / "train-labels-idx1-ubyte.gz").is_symlink()
    assert not list(mirror.parent.parent.glob(".unpack-*"))


@pytest.mark.mnist
def test_mnist_pixels_equal_the_idx_bytes(data_root):
    with gzip.open(data_root / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz") as f:
        raw = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    data = load_dataset(spec(name="mnist", n=3, offset=100), data_root)
    expected = torch.from_numpy(raw[100:103].astype(np.float32) / 255).unsqueeze(1)
    assert torch.equal(data.x, expected)


@pytest.mark.mnist
def test_mnist_full_splits_have_the_published_histograms(data_root):
    train = load_dataset(spec(name="mnist", split="train"), data_root)
    assert train.x.shape == (60000, 1, 28, 28)
    assert torch.bincount(train.y).tolist() == MNIST_TRAIN_HISTOGRAM
    assert 0.0 <= float(train.x.min()) and float(train.x.max()) <= 1.0
    test = load_dataset(spec(name="mnist"), data_root)
    assert torch.bincount(test.y).tolist() == MNIST_TEST_HISTOGRAM
    assert test.description["n"] == 10000


@pytest.mark.mnist
def test_offset_and_remaining(data_root):
    full = load_dataset(spec(name="mnist", n=20), data_root)
    part = load_dataset(spec(name="mnist", n=5, offset=5), data_root)
    assert part.indices.tolist() == [5, 6, 7, 8, 9]
    assert part.y.tolist() == [1, 4, 9, 5, 9]
    assert torch.equal(part.x, full.x[5:10])
    tail = load_dataset(spec(name="mnist", offset=9990), data_root)
    assert tail.indices.tolist() == list(range(9990, 10000))
    assert tail.description["offset"] == 9990


@pytest.mark.mnist
def test_seeded_sample_is_reproducible(data_root):
    a = load_dataset(spec(name="mnist", n=100, seed=0), data_root)
    b = load_dataset(spec(name="mnist", n=100, seed=0), data_root)
    c = load_dataset(spec(name="mnist", n=100, seed=1), data_root)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.x, b.x)
    assert a.description["sha256"] == b.description["sha256"] != c.description["sha256"]
    assert not torch.equal(a.indices, c.indices)
    idx = a.indices.tolist()
    assert idx == sorted(set(idx)) and len(idx) == 100 and 0 <= idx[0] and idx[-1] < 10000
    assert idx != list(range(100))
    full = load_dataset(spec(name="mnist"), data_root)
    assert torch.equal(a.y, full.y[a.indices]) and torch.equal(a.x, full.x[a.indices])
    smaller = load_dataset(spec(name="mnist", n=50, seed=0), data_root)
    assert set(smaller.indices.tolist()) <= set(idx)


@pytest.mark.mnist
def test_fashion_mnist_first_test_labels(data_root):
    data = load_dataset(spec(name="fashion_mnist", n=10), data_root)
    assert data.y.tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert data.classes[9] == "Ankle boot" and data.x.shape == (10, 1, 28, 28)
    assert data.description["path"] == "FashionMNIST/raw"


@pytest.mark.mnist
def test_unpacked_files_in_the_root_are_read_in_place(data_root, tmp_path):
    load_dataset(spec(name="mnist", n=1), data_root)  # make sure a mirror exists
    from robustness.paths import cache_dir

    mirror = cache_dir("datasets") / "MNIST" / "raw"
    raw = tmp_path / "root" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).symlink_to(mirror / name)  # no .gz at all
    data = load_dataset(spec(name="mnist", n=10), tmp_path / "root")
    assert data.y.tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert data.description["path"] == "MNIST/raw"


def test_missing_mnist_files_name_files_and_folder(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset(spec(name="mnist"), tmp_path)
    msg = str(err.value)
    for name in ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert name in msg
    assert str(tmp_path / "MNIST" / "raw") in msg
    assert "--data-root" in msg and "ROBUSTNESS_DATA_ROOT" in msg
    with pytest.raises(DataError, match="FashionMNIST"):
        load_dataset(spec(name="fashion_mnist"), tmp_path)


def test_data_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTNESS_DATA_ROOT", str(tmp_path / "elsewhere"))
    with pytest.raises(DataError, match=str(tmp_path / "elsewhere" / "MNIST" / "raw")):
        load_dataset(spec(name="mnist"))


def test_corrupt_archive_is_refused_without_download(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (raw / name).write_bytes(gzip.compress(b"not mnist"))
    with pytest.raises(DataError, match="MD5"):
        load_dataset(spec(name="mnist"), tmp_path)


def test_cifar_and_svhn_missing_files(tmp_path, data_root_or_empty):
    # The shared root holds only CIFAR-10's batches.meta: the message lists what is missing.
    with pytest.raises(DataError) as err:
        load_dataset(spec(name="cifar10"), data_root_or_empty)
    msg = str(err.value)
    assert "data_batch_1" in msg and "test_batch" in msg and "batches.meta" not in msg
    assert str(data_root_or_empty / "cifar-10-batches-py") in msg and "--data-root" in msg
    with pytest.raises(DataError, match=r"missing train, test, meta in .*cifar-100-python"):
        load_dataset(spec(name="cifar100", split="train"), tmp_path)
    with pytest.raises(DataError) as err:
        load_dataset(spec(name="svhn"), tmp_path)
    assert "test_32x32.mat" in str(err.value) and str(tmp_path / "svhn") in str(err.value)


def test_corrupt_cifar_and_svhn_files_are_named(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                 "data_batch_5", "test_batch", "batches.meta"):
        (folder / name).write_bytes(b"\x80\x02 not the release")
    with pytest.raises(DataError, match=r"data_batch_1: MD5 differs .* CIFAR-10 release"):
        load_dataset(spec(name="cifar10"), tmp_path)
    (tmp_path / "svhn").mkdir()
    (tmp_path / "svhn" / "test_32x32.mat").write_bytes(b"MATLAB 5.0")
    with pytest.raises(DataError, match=r"test_32x32.mat: MD5 differs"):
        load_dataset(spec(name="svhn"), tmp_path)


@pytest.fixture
def data_root_or_empty(tmp_path):
    shared = Path(os.environ.get("ROBUSTNESS_TEST_DATA_ROOT",
                                 Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    if (shared / "cifar-10-batches-py" / "batches.meta").is_file():
        return shared
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "batches.meta").write_bytes(b"")
    return tmp_path


# ------------------------------------------------------------------------------------ digits

def test_digits_fixed_split():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    train = load_dataset(spec(name="digits", split="train"))
    test = load_dataset(spec(name="digits", split="test"))
    assert train.x.shape == (1297, 1, 8, 8) and test.x.shape == (500, 1, 8, 8)
    assert torch.equal(test.y, torch.from_numpy(bunch.target[1297:]).long())
    expected = torch.from_numpy(bunch.images[1297:]).float().unsqueeze(1) / 16
    assert torch.equal(test.x, expected)
    assert torch.equal(test.x * 16, (test.x * 16).round())  # integer counts 0..16
    assert float(train.x.min()) == 0.0 and float(train.x.max()) == 1.0
    assert test.num_classes == 10 and test.classes == [str(d) for d in range(10)]
    assert test.description["split_size"] == 500
    assert "load_digits" in test.description["path"]


def test_digits_too_many_is_rejected_by_the_spec():
    with pytest.raises(ValidationError, match=r"dataset.n: 501 .*500 examples"):
        spec(name="digits", n=501)
    with pytest.raises(ValidationError, match="dataset.offset"):
        spec(name="digits", offset=500)
    with pytest.raises(ValidationError, match="dataset.offset: cannot be combined"):
        spec(name="digits", n=10, offset=3, seed=0)
    with pytest.raises(ValidationError, match="dataset.n: 20000"):
        spec(name="mnist", n=20000)


# ------------------------------------------------------------------------------- image folder

def _write_pngs(folder, x, y, mode="L", every_rgb=None):
    from PIL import Image

    for i, (img, label) in enumerate(zip(x, y.tolist(), strict=True)):
        array = (img[0].numpy() * 255).round().astype(np.uint8)
        pil = Image.fromarray(array)  # 2-D uint8: mode L
        if mode == "RGB" or (every_rgb and i % every_rgb == 0):
            pil = pil.convert("RGB")
        target = folder / str(label)
        target.mkdir(parents=True, exist_ok=True)
        pil.save(target / f"{i:04d}.png")


def test_imagefolder_round_trip(tmp_path):
    digits = load_dataset(spec(name="digits", n=40))
    _write_pngs(tmp_path / "digits" / "test", digits.x, digits.y)
    data = load_dataset(spec(name="imagefolder", path="digits"), tmp_path)
    # ImageFolder orders by class, then file name: reorder the originals the same way.
    order = sorted(range(40), key=lambda i: (int(digits.y[i]), i))
    assert data.x.shape == (40, 1, 8, 8)
    assert data.y.tolist() == digits.y[order].tolist()
    assert float((data.x - digits.x[order]).abs().max()) <= 1 / 255
    assert data.classes == sorted({str(v) for v in digits.y.tolist()})
    assert data.description["path"] == "digits/test"
    sample = load_dataset(spec(name="imagefolder", path=str(tmp_path / "digits"), n=5, seed=3))
    assert torch.equal(sample.x, data.x[sample.indices])


def test_imagefolder_colour_flat_layout_and_errors(tmp_path):
    from PIL import Image

    digits = load_dataset(spec(name="digits", n=12))
    _write_pngs(tmp_path / "rgb", digits.x, digits.y, mode="RGB")  # no split folder
    rgb = load_dataset(spec(name="imagefolder", path="rgb", split="train"), tmp_path)
    assert rgb.x.shape == (12, 3, 8, 8)
    assert torch.equal(rgb.x[:, 0], rgb.x[:, 2])
    _write_pngs(tmp_path / "mixed", digits.x, digits.y, every_rgb=4)
    mixed = load_dataset(spec(name="imagefolder", path="mixed"), tmp_path)
    assert mixed.x.shape[1] == 3 and torch.allclose(mixed.x, rgb.x)

    odd = tmp_path / "mixed" / str(int(digits.y[5])) / "9999.png"
    Image.new("L", (9, 8)).save(odd)
    with pytest.raises(DataError, match=r"9999.png is 9x8 .* all images must share one size"):
        load_dataset(spec(name="imagefolder", path="mixed"), tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(spec(name="imagefolder", path="nowhere"), tmp_path)
    (tmp_path / "split" / "train" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="dataset.split: .* no 'test' folder"):
        load_dataset(spec(name="imagefolder", path="split"), tmp_path)
    with pytest.raises(DataError, match=r"dataset.n: 13 .*\(12 examples\)"):
        load_dataset(spec(name="imagefolder", path="rgb", n=13), tmp_path)


# ------------------------------------------------------------------------------- tensor files

def _safetensors(path, x, y, classes=None):
    from safetensors.torch import save_file

    meta = {"classes": json.dumps(classes)} if classes else None
    save_file({"x": x, "y": y}, str(path), metadata=meta)


def test_tensors_npz_and_safetensors_round_trip(tmp_path):
    digits = load_dataset(spec(name="digits", n=20))
    as_uint8 = (digits.x * 255).round().to(torch.uint8)
    np.savez(tmp_path / "u8.npz", x=as_uint8.numpy(), y=digits.y.numpy().astype(np.int32),
             classes=np.array([f"digit {d}" for d in range(10)]))
    data = load_dataset(spec(name="tensors", path="u8.npz"), tmp_path)
    assert torch.equal(data.x, as_uint8.float() / 255) and torch.equal(data.y, digits.y)
    assert data.y.dtype == torch.int64 and data.classes[3] == "digit 3"
    assert data.num_classes == 10 and data.description["split"] is None

    # Format is detected from the content, whatever the name says.
    np.savez(tmp_path / "float.npz", x=digits.x.numpy(), y=digits.y.numpy())
    (tmp_path / "float.npz").rename(tmp_path / "float.bin")
    data = load_dataset(spec(name="tensors", path=str(tmp_path / "float.bin"), n=5, offset=2))
    assert torch.equal(data.x, digits.x[2:7]) and data.indices.tolist() == [2, 3, 4, 5, 6]
    assert data.classes is None and data.num_classes == int(digits.y.max()) + 1

    _safetensors(tmp_path / "d.safetensors", digits.x, digits.y, [str(d) for d in range(10)])
    data = load_dataset(spec(name="tensors", path="d.safetensors", n=7, seed=1), tmp_path)
    assert torch.equal(data.x, digits.x[data.indices]) and data.classes[9] == "9"
    assert data.description["split_size"] == 20 and data.description["n"] == 7


def test_tensors_errors(tmp_path):
    x = torch.rand(20, 1, 4, 4)
    y = torch.arange(20) % 3

    def fails(pattern, name="t.npz", **kw):
        with pytest.raises(DataError, match=pattern):
            load_dataset(spec(name="tensors", path=name, **kw), tmp_path)

    fails(r"file .*t.npz not found")
    np.savez(tmp_path / "t.npz", x=x.numpy())
    fails(r"no array 'y' \(found: x\)")
    np.savez(tmp_path / "t.npz", x=x.numpy(), y=y[:19].numpy())
    fails(r"'y' has 19 labels but 'x' has 20")
    np.savez(tmp_path / "t.npz", x=x[:, 0].numpy(), y=y.numpy())
    fails(r"'x' has shape \[20, 4, 4\]; expected \[N, C, H, W\]")
    np.savez(tmp_path / "t.npz", x=(x * 2.5 - 0.5).numpy(), y=y.numpy())
    fails(r"'x' values range from -0.\d+ to 1.9\d+; float images must lie in \[0, 1\]")
    np.savez(tmp_path / "t.npz", x=x.numpy(), y=y.numpy().astype(np.float32))
    fails(r"'y' has dtype torch.float32")
    np.savez(tmp_path / "t.npz", x=x.numpy(), y=np.array([object()] * 20, dtype=object))
    fails(r"'y' is a pickled object array, which is refused")
    np.savez(tmp_path / "t.npz", x=x.numpy(), y=y.numpy())
    fails(r"dataset.n: 21 from offset 0 exceeds .*t.npz \(20 examples\)", n=21)
    fails(r"dataset.offset: 20 is beyond .*\(20 examples\)", offset=20)
    fails(r"dataset.n: cannot sample 21 distinct", n=21, seed=0)
    assert len(load_dataset(spec(name="tensors", path="t.npz", offset=15), tmp_path)) == 5

    _safetensors(tmp_path / "t.safetensors", x, y, classes=["a", "b"])
    fails(r"'y' has label 2 but 'classes' names only 2", name="t.safetensors")
    _safetensors(tmp_path / "t.safetensors", x, y[:, None])
    fails(r"'y' has shape \[20, 1\]", name="t.safetensors")
    (tmp_path / "t.pt").write_bytes(b"\x80\x04\x95 pickle")
    fails("neither an .npz nor a .safetensors", name="t.pt")


def test_path_is_required_for_file_datasets():
    for name in ("tensors", "imagefolder"):
        with pytest.raises(ValidationError, match=f"dataset.path: required for dataset '{name}'"):
            spec(name=name)


def test_select_indices():
    assert select_indices(10, 3, 4).tolist() == [4, 5, 6]
    assert select_indices(10).tolist() == list(range(10))
    drawn = select_indices(1000, 10, seed=7)
    assert drawn.dtype == torch.int64 and drawn.tolist() == sorted(set(drawn.tolist()))
    assert torch.equal(drawn, select_indices(1000, 10, seed=7))
    assert sorted(select_indices(5, seed=1).tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(DataError, match="empty"):
        select_indices(0)
