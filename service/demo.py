"""The demo model `make run` registers: a small CNN trained in seconds on real data that is
present (scikit-learn's digits, or MNIST when a data root holds it)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from store.artifacts import ArtifactStore
from store.db import Database, ModelRecord, new_id, utcnow


def train_demo(data_root: str | Path | None) -> tuple[Path, dict, dict]:
    """Returns (weights file, metadata, a ready audit spec without model_id)."""
    from robustness.data import load_dataset
    from robustness.errors import DataError
    from robustness.models import build_model, save_state_dict
    from robustness.spec import DatasetSpec
    from robustness.training import fit

    tmp = Path(tempfile.mkdtemp(prefix="robustness-demo-"))
    mnist = None
    if data_root:
        try:
            mnist = load_dataset(DatasetSpec(name="mnist", split="train", n=10000), data_root)
        except DataError:
            mnist = None
    if mnist is not None:
        train, arch, shape, name, dataset = mnist, "wong_mnist", [1, 28, 28], "mnist-demo", \
            {"name": "mnist", "split": "test", "n": 200}
        epochs, eps = 2, [0.0, 0.1, 0.2, 0.3]
    else:
        train = load_dataset(DatasetSpec(name="digits", split="train"))
        arch, shape, name, dataset = "madry_mnist", [1, 8, 8], "digits-demo", \
            {"name": "digits", "split": "test", "n": 200}
        epochs, eps = 15, [0.0, 0.05, 0.1, 0.2]
    net = fit(build_model(arch, 10, shape), train.x, train.y, epochs=epochs, batch_size=64,
              lr=1e-3, seed=0)
    weights = tmp / f"{name}.safetensors"
    save_state_dict(net, weights)
    metadata = {"name": name, "architecture": arch, "num_classes": 10, "input_shape": shape}
    audit = {"dataset": dataset,
             "attacks": [{"name": "fgsm"}, {"name": "pgd", "steps": 20}],
             "epsilons": eps, "top_k": 3, "seed": 0}
    return weights, metadata, audit


def register_file(db: Database, store: ArtifactStore, weights: Path, metadata: dict) -> str:
    sha = store.put_file(weights)
    record = ModelRecord(id=new_id("mdl"), name=metadata.get("name"), sha256=sha,
                         size=weights.stat().st_size, format="safetensors",
                         model_metadata=metadata, created_at=utcnow())
    with db.session.begin() as s:
        s.add(record)
    return record.id
