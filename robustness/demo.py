"""A self-contained first run: train a small CNN on scikit-learn's digits (real data, no files,
seconds on a CPU), save it as a user would, and audit it through the same path as the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

DEMO_SPEC = {
    "dataset": {"name": "digits", "split": "test", "n": 500},
    "attacks": [{"name": "fgsm"},
                {"name": "pgd", "norm": "linf", "steps": 20, "step_size": 0.01},
                {"name": "cw", "steps": 100, "epsilons": [0.0, 0.5, 1.0, 2.0]}],
    "epsilons": [0.0, 0.05, 0.1, 0.2],
    "top_k": 3, "seed": 0,
}


def train_demo_model(out_dir: Path, device=None) -> tuple[Path, Path]:
    """Train madry_mnist on 8×8 digits; write weights (safetensors) and metadata JSON."""
    from robustness.data import load_dataset
    from robustness.devices import pick_device
    from robustness.models import build_model, save_state_dict
    from robustness.spec import DatasetSpec
    from robustness.training import fit

    device = pick_device(device)
    train = load_dataset(DatasetSpec(name="digits", split="train"))
    net = build_model("madry_mnist", 10, (1, 8, 8)).to(device)
    fit(net, train.x, train.y, epochs=15, batch_size=64, lr=1e-3, seed=0)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / "digits_madry.safetensors"
    save_state_dict(net, weights)
    meta = out_dir / "digits_madry.json"
    meta.write_text(json.dumps({"name": "digits-demo", "architecture": "madry_mnist",
                                "num_classes": 10, "input_shape": [1, 8, 8]}))
    return weights, meta


def run_demo(out_dir: Path, device=None) -> int:
    from robustness.cli import main

    print("training a small CNN on scikit-learn's digits ...", file=sys.stderr)
    weights, meta = train_demo_model(out_dir, device)
    spec = out_dir / "spec.json"
    spec.write_text(json.dumps(DEMO_SPEC, indent=2))
    return main(["audit", "--spec", str(spec), "--model", str(weights), "--metadata", str(meta),
                 "--out", str(out_dir / "report.json"), "--device", str(device or "auto")])
