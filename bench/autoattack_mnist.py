"""The default audit (`standard`) against Croce & Hein's own AutoAttack (pyautoattack, a
development dependency) on the same MNIST test images, one run: robust accuracy and wall time
per model and ε.

    .venv/bin/python bench/autoattack_mnist.py --data-root ../shared/data --n 1000 \
        --model normal=out/bench-normal/model.safetensors \
        --model fgsm-at=out/bench-fgsm-at/model.safetensors

A model is a checkpoint with its model card (`robustness train` writes both; `--train-normal
DIR` trains the normally trained CNN there first: wong_mnist, 2 epochs). Ours is timed as a
user gets it: the whole audit of that ε (per-example records and validity checks included);
`attack_seconds` is the cascade alone. Theirs is `AutoAttack(version="standard")
.run_standard_evaluation`, same images, same batch size, same threads. Writes
`result.json` and prints one line per (model, ε). `--ours-only` skips the reference (the
FGSM-AT headline re-measured with `standard` on all 10,000 test images, per seed). `--grid`
times ours as one audit of the whole ε grid (as a user runs it: the cascade's breaking-ε
search) against theirs once per ε; `grid_time_ratio` compares the totals.
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

import torch

NORMAL = {"name": "mnist-normal", "architecture": "wong_mnist",
          "dataset": {"name": "mnist", "split": "train"}, "method": "standard",
          "epochs": 2, "batch_size": 100, "lr": 1e-3, "seed": 0}


def train_normal(out: Path, data_root) -> Path:
    from robustness.training import parse_training_spec, save_training, train_from_spec

    result = train_from_spec(parse_training_spec(NORMAL), data_root=data_root, device="cpu")
    return save_training(result, out)


def load(path: Path, data):
    from robustness.audit import metadata_for_data
    from robustness.models import ModelMetadata, load_model

    card = json.loads(path.with_suffix(".json").read_text())
    meta = ModelMetadata.model_validate(card.get("metadata", card))
    return load_model(path, metadata_for_data(meta, data), device="cpu")


def ours_audit(model, data, epsilons: list[float], batch: int) -> tuple[dict, float]:
    """Our default audit over `epsilons`, timed as a user gets it: (report, seconds)."""
    from robustness.audit import audit
    from robustness.spec import parse_audit_spec

    spec = parse_audit_spec({"dataset": {"name": "mnist"}, "epsilons": epsilons,
                             "batch_size": batch, "seed": 0})
    t0 = time.perf_counter()
    report = audit(model, data, spec, device="cpu").report
    return report, time.perf_counter() - t0


def theirs_run(model, data, eps: float, batch: int) -> tuple[float, float]:
    """pyautoattack's standard evaluation at one ε: (robust accuracy, seconds)."""
    from pyautoattack import AutoAttack

    adversary = AutoAttack(model, norm="Linf", eps=eps, version="standard", seed=0,
                           device="cpu")
    t0 = time.perf_counter()
    x_adv = adversary.run_standard_evaluation(data.x, data.y, batch_size=batch)
    if isinstance(x_adv, tuple):  # pyautoattack returns (x_adv, y_adv)
        x_adv = x_adv[0]
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        accuracy = float(torch.cat([model(x_adv[i:i + batch]).argmax(1) == data.y[i:i + batch]
                                    for i in range(0, len(data.y), batch)]).float().mean())
    return accuracy, seconds


def _ours_row(name, report, row, seconds, data) -> dict:
    checks = {c["id"]: c["status"] for c in report["checks"]}
    return {"model": name, "epsilon": row["epsilon"], "n": len(data.y),
            "clean": report["clean"]["accuracy"], "ours": row["accuracy"],
            "ours_seconds": round(seconds, 1),
            "attack_seconds": round(report["provenance"]["attack_seconds"]["standard"], 1),
            "checks_seconds": round(report["provenance"]["checks_seconds"], 1),
            "stages": {s["label"]: s["accuracy"] for s in row["stages"]},
            "checks_not_passed": {k: v for k, v in checks.items() if v != "pass"}}


def compare(name: str, model, data, eps: float, batch: int, reference: bool = True) -> dict:
    """One ε: our audit of that ε alone against theirs."""
    report, seconds = ours_audit(model, data, [eps], batch)
    row = report["results"][0]
    ours = _ours_row(name, report, row, seconds, data)
    if not reference:
        return ours
    theirs, theirs_seconds = theirs_run(model, data, eps, batch)
    return {**ours, "theirs": theirs,
            "difference_pp": round(100 * (row["accuracy"] - theirs), 2),
            "theirs_seconds": round(theirs_seconds, 1),
            "time_ratio": round(seconds / theirs_seconds, 3)}


def compare_grid(name: str, model, data, epsilons: list[float], batch: int) -> list[dict]:
    """The ε grid as a user audits it, one audit (the cascade's breaking-ε search), against
    theirs run once per ε; the time ratio is of the totals."""
    report, seconds = ours_audit(model, data, epsilons, batch)
    rows, theirs_total = [], 0.0
    for row in report["results"]:
        theirs, theirs_seconds = theirs_run(model, data, row["epsilon"], batch)
        theirs_total += theirs_seconds
        rows.append({**_ours_row(name, report, row, seconds, data), "theirs": theirs,
                     "difference_pp": round(100 * (row["accuracy"] - theirs), 2),
                     "theirs_seconds": round(theirs_seconds, 1)})
    for row in rows:
        row["grid_time_ratio"] = round(seconds / theirs_total, 3)
    return rows


def main():
    from robustness.data import load_dataset
    from robustness.spec import DatasetSpec

    parser = argparse.ArgumentParser()
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--n", type=int, default=1000, help="first n test images")
    parser.add_argument("--epsilons", type=float, nargs="+", default=[0.1, 0.2, 0.3])
    parser.add_argument("--model", action="append", default=[],
                        help="name=path/to/model.safetensors (card next to it)")
    parser.add_argument("--train-normal", default=None,
                        help="train the normally trained CNN into this directory first")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--ours-only", action="store_true",
                        help="skip the reference (e.g. re-measuring models on all 10,000)")
    parser.add_argument("--grid", action="store_true",
                        help="ours as one audit over all --epsilons, against theirs per ε")
    parser.add_argument("--out", default="out/bench-autoattack")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    models = dict(m.split("=", 1) for m in args.model)
    if args.train_normal:
        models["normal"] = str(train_normal(Path(args.train_normal), args.data_root))
    data = load_dataset(DatasetSpec(name="mnist", split="test", n=args.n), args.data_root)
    rows = []
    for name, path in models.items():
        model = load(Path(path), data)
        runs = ([partial(compare_grid, name, model, data, args.epsilons, args.batch)]
                if args.grid else
                [partial(lambda *a: [compare(*a)], name, model, data, eps, args.batch,
                         not args.ours_only) for eps in args.epsilons])
        for run in runs:
            for row in run():
                rows.append(row)
                print(json.dumps(row), flush=True)
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            (out / "result.json").write_text(json.dumps(
                {"threads": torch.get_num_threads(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
