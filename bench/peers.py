"""The same attack on the same model, examples and batch, with this project and its peers
(torchattacks, ART, Foolbox) and the compute floor, in one process and one run: time ratios
and robust accuracies (issue 17's harness).

    .venv/bin/python bench/peers.py --data-root ../shared/data [--n 1000] [--batch 250] \\
        [--cases pgd,sweep,cw,resnet] [--seeds 1] [--device cpu]

Models: a normally trained `wong_mnist` and its FGSM-AT successor (the README recipe), trained
by bench/report_pages.py into out/report-pages/ if not there yet. Cases:

- `pgd`: single-ε PGD-40 (L∞, ε=0.3, step 0.01, one random start) with every library, and the
  floor: 40 forward+backward passes w.r.t. the input on the same batches.
- `sweep`: a 9-point ε-sweep (0 to 0.4) of FGSM + PGD-40: one audit of ours (robustness'
  run_sweep: records, checks and all; PGD's breaking-ε search) against torchattacks run once
  per ε. With `--seeds k`, the seed averages of the time ratio and of the accuracy gaps.

- `cw`: CW-L2, torchattacks' CW (c=1, 100 steps) against ours with CW_OURS; success and
  mean L2 (on each one's successes and on the common ones).

- `resnet`: throughput on a CIFAR-size ResNet-18 with synthetic inputs (`--device`,
  `--resnet-n`, `--resnet-batch`): PGD-10 with ours and torchattacks as shares of the
  floor's passes per second; and forward passes alone under no_grad and inference_mode.

The `standard` preset against pyautoattack is bench/autoattack_mnist.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from report_pages import FGSM_AT, NORMAL, trained

EPS, STEPS, ALPHA = 0.3, 40, 0.01
# Ours in the CW case: the library's CW-L2 with these parameters.
CW_OURS = {"steps": 40, "binary_search_steps": 1, "lr": 0.05, "adapt": 0.05,
           "initial_const": 0.3}
GRID = [round(0.05 * i, 2) for i in range(9)]


def batches(x, y, size):
    for i in range(0, len(x), size):
        yield x[i:i + size], y[i:i + size]


def accuracy(model, x_adv, y) -> float:
    with torch.no_grad():
        return float((model(x_adv).argmax(1) == y).float().mean())


def timed(fn):
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def floor(model, x, y, batch, passes):
    for xb, yb in batches(x, y, batch):
        for _ in range(passes):
            xi = xb.clone().requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(model(xi), yb)
            torch.autograd.grad(loss, xi)


def forwards(model, x, batch, passes, mode):
    """`passes` forward passes over x in batches, under `mode` (no_grad or inference_mode)."""
    with mode():
        for _ in range(passes):
            for i in range(0, len(x), batch):
                model(x[i:i + batch])


def pgd_case(model, x, y, batch, seed, repeats: int = 1) -> dict:
    """Every library `repeats` times in turn, the floor among them; each one's median time
    (this machine's timings wander by ±20% from one minute to the next)."""
    import statistics

    import foolbox
    import torchattacks
    from art.attacks.evasion import ProjectedGradientDescentPyTorch
    from art.estimators.classification import PyTorchClassifier

    from robustness.attacks import LinfBall, pgd

    generator = torch.Generator().manual_seed(seed)
    art_model = PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(),
                                  input_shape=tuple(x.shape[1:]), nb_classes=10,
                                  clip_values=(0.0, 1.0), device_type="cpu")
    art_pgd = ProjectedGradientDescentPyTorch(art_model, norm="inf", eps=EPS, eps_step=ALPHA,
                                              max_iter=STEPS, num_random_init=1,
                                              batch_size=batch, verbose=False)
    fmodel = foolbox.PyTorchModel(model, bounds=(0, 1))
    fb_pgd = foolbox.attacks.LinfPGD(abs_stepsize=ALPHA, steps=STEPS, random_start=True)
    attacks = {
        "ours": lambda xb, yb: pgd(model, xb, yb, LinfBall(EPS), steps=STEPS,
                                   step_size=ALPHA, generator=generator),
        "torchattacks": torchattacks.PGD(model, eps=EPS, alpha=ALPHA, steps=STEPS,
                                         random_start=True),
        "art": lambda xb, yb: torch.from_numpy(art_pgd.generate(xb.numpy(), y=yb.numpy())),
        "foolbox": lambda xb, yb: fb_pgd(fmodel, xb, yb, epsilons=EPS)[1],
    }
    seconds: dict[str, list[float]] = {name: [] for name in ("floor", *attacks)}
    rows: dict = {}
    for _ in range(repeats):
        seconds["floor"].append(timed(lambda: floor(model, x, y, batch, STEPS))[1])
        for name, attack in attacks.items():
            torch.manual_seed(seed)
            adv, took = timed(lambda attack=attack: torch.cat(
                [attack(xb, yb) for xb, yb in batches(x, y, batch)]))
            assert float((adv - x).abs().max()) <= EPS + 1e-5
            seconds[name].append(took)
            rows[name] = {"accuracy": accuracy(model, adv, y)}
    rows["floor"] = statistics.median(seconds["floor"])
    for name in attacks:
        rows[name]["seconds"] = statistics.median(seconds[name])
        rows[name]["of_floor"] = rows[name]["seconds"] / rows["floor"]
    return rows


def sweep_case(model, data, batch, seed) -> dict:
    import torchattacks

    from robustness.evaluation import run_sweep
    from robustness.spec import parse_audit_spec

    spec = parse_audit_spec({"dataset": {"name": "mnist", "split": "test", "n": len(data.y)},
                             "attacks": [{"name": "fgsm"},
                                         {"name": "pgd", "steps": STEPS, "step_size": ALPHA}],
                             "epsilons": GRID, "batch_size": batch, "seed": seed})
    report, ours = timed(lambda: run_sweep(model, data, spec, device="cpu").report)
    mine = {(r["label"], r["epsilon"]): r["accuracy"] for r in report["results"]}
    x, y = data.x, data.y
    theirs, seconds = {}, 0.0
    torch.manual_seed(seed)
    for eps in GRID:
        for name, attack in (("fgsm", torchattacks.FGSM(model, eps=eps)),
                             ("pgd", torchattacks.PGD(model, eps=eps, alpha=ALPHA, steps=STEPS,
                                                      random_start=True))):
            adv, s = timed(lambda attack=attack: torch.cat(
                [attack(xb, yb) for xb, yb in batches(x, y, batch)]))
            seconds += s
            theirs[(name, eps)] = accuracy(model, adv, y)
    return {"ours_seconds": ours, "torchattacks_seconds": seconds,
            "ours_checks_seconds": report["provenance"].get("checks_seconds"),
            "accuracy": {f"{k[0]} {k[1]:g}": [mine[k], theirs[k]] for k in sorted(mine)}}


def cw_case(model, x, y, batch, seed, ours: dict) -> dict:
    """CW-L2: torchattacks' CW (c=1, κ=0, 100 Adam steps, lr 0.01: its documented setting)
    against ours with `ours`'s parameters; success on clean-correct examples and the mean L2
    of the adversarials, on each one's successes and on those both found."""
    import torchattacks

    from robustness.attacks import carlini_wagner_l2

    with torch.no_grad():
        correct = model(x).argmax(1) == y
    x, y = x[correct], y[correct]
    torch.manual_seed(seed)
    mine, s_ours = timed(lambda: torch.cat([carlini_wagner_l2(model, xb, yb, **ours)[0]
                                            for xb, yb in batches(x, y, batch)]))
    attack = torchattacks.CW(model, c=1, kappa=0, steps=100, lr=0.01)
    theirs, s_theirs = timed(lambda: torch.cat([attack(xb, yb) for xb, yb in
                                                batches(x, y, batch)]))
    out = {"ours_seconds": s_ours, "torchattacks_seconds": s_theirs, "ours_params": ours}
    found = {}
    for name, adv in (("ours", mine), ("torchattacks", theirs)):
        with torch.no_grad():
            found[name] = model(adv).argmax(1) != y
        l2 = (adv - x).flatten(1).norm(dim=1)
        out[f"{name}_success"] = float(found[name].float().mean())
        out[f"{name}_mean_l2"] = float(l2[found[name]].mean())
        found[name + "_l2"] = l2
    both = found["ours"] & found["torchattacks"]
    out["both_mean_l2"] = [float(found["ours_l2"][both].mean()),
                           float(found["torchattacks_l2"][both].mean())]
    return out


def resnet_case(device: str, n: int, batch: int, steps: int = 10, seed: int = 0) -> dict:
    """Throughput on a CIFAR-size ResNet-18 (PreAct, random weights, synthetic inputs whose
    labels are its own predictions, so every example is attacked at every step): PGD-`steps`
    at ε=8/255 with ours and torchattacks against the floor, `steps` forward+backward passes
    on the same batches, all in the audit's layout (channels-last on CUDA); and ours under
    AMP (`precision: amp`). Passes per second and each one's share of the floor's."""
    import torchattacks

    from robustness.attacks import LinfBall, pgd
    from robustness.devices import Autocast, fast_layout, in_layout
    from robustness.models import build_model

    dev = torch.device(device)
    layout = fast_layout(dev)
    generator = torch.Generator().manual_seed(seed)
    model = build_model("preact_resnet18", 10, (3, 32, 32)).to(dev, memory_format=layout)
    model = model.eval().requires_grad_(False)
    x = in_layout(torch.rand((n, 3, 32, 32), generator=generator).to(dev), layout)
    with torch.no_grad():
        y = torch.cat([model(xb).argmax(1) for xb, _ in batches(x, x[:, 0, 0, 0], batch)])

    def synced(fn):
        def run():
            out = fn()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            return out
        return run

    eps, alpha = 8 / 255, 2 / 255
    gen = torch.Generator().manual_seed(seed)
    amp = Autocast(model, dev.type)
    attack = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
    runs = {
        "floor": lambda: floor(model, x, y, batch, steps),
        "ours": lambda: [pgd(model, xb, yb, LinfBall(eps), steps=steps, step_size=alpha,
                             generator=gen) for xb, yb in batches(x, y, batch)],
        "torchattacks": lambda: [attack(xb, yb) for xb, yb in batches(x, y, batch)],
        "ours_amp": lambda: [pgd(amp, xb, yb, LinfBall(eps), steps=steps, step_size=alpha,
                                 generator=gen) for xb, yb in batches(x, y, batch)],
        # Evaluation passes (records, Square's queries): forwards only, under no_grad as
        # the library runs them, or under inference_mode, kept only if it pays.
        "forward_no_grad": lambda: forwards(model, x, batch, steps, torch.no_grad),
        "forward_inference_mode": lambda: forwards(model, x, batch, steps,
                                                   torch.inference_mode),
    }
    # Warm-up: cuDNN's algorithm search, the allocator's caches, autocast's casts.
    synced(lambda: floor(model, x[:batch], y[:batch], batch, 2))()
    synced(lambda: pgd(amp, x[:batch], y[:batch], LinfBall(eps), steps=2, step_size=alpha))()
    rows = {name: {"seconds": timed(synced(run))[1]} for name, run in runs.items()}
    for name, row in rows.items():
        row["passes_per_second"] = n * steps / row["seconds"]
        if not name.startswith("forward"):
            row["share_of_floor"] = rows["floor"]["seconds"] / row["seconds"]
    return {"device": device, "n": n, "batch": batch, "steps": steps,
            "layout": str(layout), **rows}


def sweep_summary(runs: list[dict]) -> dict:
    """Seed averages: the time ratio, and per (attack, ε) our accuracy minus torchattacks'
    (the target: at most +0.2 pp everywhere)."""
    keys = runs[0]["accuracy"]
    gaps = {k: sum(r["accuracy"][k][0] - r["accuracy"][k][1] for r in runs) / len(runs)
            for k in keys}
    return {"ratio": sum(r["ours_seconds"] for r in runs)
            / sum(r["torchattacks_seconds"] for r in runs),
            "accuracy_gap_pp": {k: round(100 * v, 2) for k, v in gaps.items()},
            "largest_gap_pp": round(100 * max(gaps.values()), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None, help="MNIST (every case but resnet)")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--cases", default="pgd,sweep")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--models", default="out/report-pages")
    parser.add_argument("--out", default="out/peers.json")
    parser.add_argument("--repeats", type=int, default=1,
                        help="pgd case: runs of each library, in turn (medians)")
    parser.add_argument("--device", default="cpu", help="for the resnet case")
    parser.add_argument("--resnet-n", type=int, default=256)
    parser.add_argument("--resnet-batch", type=int, default=64)
    args = parser.parse_args()
    results = {"threads": torch.get_num_threads(), "torch": torch.__version__}
    if "resnet" in args.cases.split(","):
        results["resnet"] = resnet_case(args.device, args.resnet_n, args.resnet_batch)
        print("resnet", json.dumps(results["resnet"]), flush=True)
        args.cases = ",".join(c for c in args.cases.split(",") if c != "resnet")
    if not args.cases:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1))
        return
    from robustness.data import load_dataset
    from robustness.models import ModelMetadata, load_model
    from robustness.spec import DatasetSpec

    data = load_dataset(DatasetSpec(name="mnist", split="test", n=args.n), args.data_root)
    results.update(n=args.n, batch=args.batch)
    for name, spec in (("normal", NORMAL), ("fgsm-at", FGSM_AT)):
        weights = trained(spec, Path(args.models) / name, args.data_root)
        meta = ModelMetadata.model_validate(
            json.loads(weights.with_suffix(".json").read_text())["metadata"])
        model = load_model(weights, meta, device="cpu").eval().requires_grad_(False)
        for case in args.cases.split(","):
            for seed in range(args.seeds):
                if case == "cw":
                    row = cw_case(model, data.x, data.y, args.batch, seed, CW_OURS)
                elif case == "pgd":
                    row = pgd_case(model, data.x, data.y, args.batch, seed, args.repeats)
                else:
                    row = sweep_case(model, data, args.batch, seed)
                results.setdefault(name, {}).setdefault(case, []).append(row)
                print(name, case, seed, json.dumps(row), flush=True)
    for name in ("normal", "fgsm-at"):
        runs = results.get(name, {}).get("sweep")
        if runs:
            results[name]["sweep_summary"] = summary = sweep_summary(runs)
            print(name, "sweep over", len(runs), "seeds", json.dumps(summary), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
