"""Randomized smoothing on MNIST (issue 14's real run): train a CNN with Gaussian noise
augmentation at each σ (`method: gaussian`), then certify test images with CERTIFY and attack
the smoothed classifier (SmoothAdv), through the same library calls as `robustness certify`.

    .venv/bin/python bench/smoothing_mnist.py --data-root ../shared/data \\
        [--sigmas 0.25 0.5] [--images 500] [--n 100000] [--device cuda] [--out out/smoothing]
    .venv/bin/python bench/smoothing_mnist.py --summarize out/smoothing [--plot curves.png]

Each σ's model goes to OUT/sigma-<σ>/ (model.safetensors, model.json) and its report to
OUT/sigma-<σ>/certification.json; a model already there is reused. --summarize prints the
markdown table of certified and attacked accuracy per radius, with the cost.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

RADII = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]


def train(sigma: float, args, folder: Path) -> Path:
    from robustness.training import parse_training_spec, save_training, train_from_spec

    weights = folder / "model.safetensors"
    if weights.exists():
        return weights
    spec = parse_training_spec({
        "architecture": args.architecture, "dataset": {"name": "mnist", "split": "train"},
        "method": "gaussian", "sigma": sigma, "epochs": args.epochs, "batch_size": 128,
        "lr": 1e-3, "seed": args.seed, "validation": {"n": 1000}})
    started = time.perf_counter()
    result = train_from_spec(spec, data_root=args.data_root, device=args.device)
    path = save_training(result, folder)
    (folder / "training_seconds.txt").write_text(f"{time.perf_counter() - started:.1f}\n")
    return path


def certify(sigma: float, args, weights: Path, folder: Path) -> dict:
    from robustness.certification import certify_model_file
    from robustness.models import ModelMetadata
    from robustness.spec import parse_certify_spec

    spec = parse_certify_spec({
        "dataset": {"name": "mnist", "split": "test", "n": args.images}, "sigma": sigma,
        "n0": 100, "n": args.n, "alpha": 0.001, "radii": RADII, "seed": args.seed,
        "attack": {"steps": args.attack_steps, "draws": args.attack_draws, "n": 1000}})
    card = json.loads(weights.with_suffix(".json").read_text())
    report = certify_model_file(spec, weights, ModelMetadata.parse(card["metadata"]),
                                data_root=args.data_root, device=args.device)
    (folder / "certification.json").write_text(json.dumps(report))
    return report


def summarize(out: Path) -> str:
    rows = []
    for path in sorted(out.glob("sigma-*/certification.json")):
        report = json.loads(path.read_text())
        attacked = {r["radius"]: r["accuracy"] for r in report.get("attack", {})
                    .get("results", [])}
        cert = {r["radius"]: r["accuracy"] for r in report["certified_accuracy"]}
        cells = [f"{100 * cert[r]:.1f}" + (f" / {100 * attacked[r]:.1f}" if r in attacked
                                           else "") for r in RADII if r in cert]
        cost = report["cost"]
        rows.append(f"| {report['spec']['sigma']} | " + " | ".join(cells)
                    + f" | {100 * report['abstention_rate']:.1f} | {cost['seconds']:.0f} |")
    head = ("| σ | " + " | ".join(f"r={r:g}" for r in RADII) + " | abstained | seconds |\n"
            + "| --- " * (len(RADII) + 3) + "|")
    return "\n".join([head, *rows])


def plot(out: Path, path: Path) -> None:
    """Certified (solid) and attacked (dashed) accuracy against the L2 radius, per σ."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, report_path in enumerate(sorted(out.glob("sigma-*/certification.json"))):
        report = json.loads(report_path.read_text())
        color = f"C{i}"
        rows = report["certified_accuracy"]
        ax.plot([r["radius"] for r in rows], [r["accuracy"] for r in rows], color=color,
                label=f"σ={report['spec']['sigma']:g} certified")
        attacked = report.get("attack", {}).get("results", [])
        if attacked:
            ax.plot([r["radius"] for r in attacked], [r["accuracy"] for r in attacked],
                    color=color, linestyle="--", label=f"σ={report['spec']['sigma']:g} attacked")
    ax.set_xlabel("L2 radius")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.25, 0.5])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--architecture", default="wong_mnist")
    parser.add_argument("--attack-steps", type=int, default=20)
    parser.add_argument("--attack-draws", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="out/smoothing")
    parser.add_argument("--summarize", metavar="OUT")
    parser.add_argument("--plot", metavar="PNG", help="with --summarize: also draw the curves")
    args = parser.parse_args()
    if args.summarize:
        print(summarize(Path(args.summarize)))
        if args.plot:
            plot(Path(args.summarize), Path(args.plot))
        return
    if not args.data_root:
        parser.error("--data-root is required")
    for sigma in args.sigmas:
        folder = Path(args.out) / f"sigma-{sigma:g}"
        folder.mkdir(parents=True, exist_ok=True)
        weights = train(sigma, args, folder)
        report = certify(sigma, args, weights, folder)
        print(json.dumps({"sigma": sigma, "certified_accuracy": report["certified_accuracy"],
                          "attack": report["attack"]["results"], "cost": report["cost"]}))
    print(summarize(Path(args.out)))


if __name__ == "__main__":
    main()
