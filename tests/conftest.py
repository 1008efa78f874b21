"""Shared fixtures: real data (digits always; MNIST from ROBUSTNESS_TEST_DATA_ROOT) and small
models trained on it once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The MNIST/Fashion-MNIST root; skipped where absent, except in CI where it must exist."""
    root = Path(os.environ.get("ROBUSTNESS_TEST_DATA_ROOT", REPO.parent / "shared" / "data"))
    if not (root / "MNIST" / "raw").is_dir():
        if os.environ.get("ROBUSTNESS_TEST_REQUIRE_DATA"):
            pytest.fail(f"MNIST files not found under {root} (ROBUSTNESS_TEST_DATA_ROOT)")
        pytest.skip(f"MNIST files not found under {root}")
    return root


@pytest.fixture(scope="session", autouse=True)
def _robustness_home(tmp_path_factory):
    """Caches (unpacked data sets) go to a per-session directory, not the user's home."""
    home = tmp_path_factory.mktemp("robustness-home")
    old = os.environ.get("ROBUSTNESS_HOME")
    os.environ["ROBUSTNESS_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("ROBUSTNESS_HOME", None)
    else:
        os.environ["ROBUSTNESS_HOME"] = old


@pytest.fixture(scope="session")
def digits():
    from robustness.data import load_dataset
    from robustness.spec import DatasetSpec

    return (load_dataset(DatasetSpec(name="digits", split="train")),
            load_dataset(DatasetSpec(name="digits", split="test")))


@pytest.fixture(scope="session")
def digits_model(digits):
    """madry_mnist on 8×8 digits, trained in seconds; ~95% clean test accuracy."""
    from robustness.models import Classifier, ModelMetadata, build_model
    from robustness.training import fit

    train, _ = digits
    torch.manual_seed(0)  # the initial weights, whichever test asks for the model first
    net = fit(build_model("madry_mnist", 10, (1, 8, 8)), train.x, train.y, epochs=15,
              batch_size=64, lr=1e-3, seed=0)
    model = Classifier(net, metadata=ModelMetadata(architecture="madry_mnist", num_classes=10,
                                                   input_shape=[1, 8, 8]))
    model.eval().requires_grad_(False)
    return model


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())
