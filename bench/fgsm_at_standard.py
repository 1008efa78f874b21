"""Trained MNIST models re-audited at ε=0.3 with both figures side by side: Wong et al.'s
PGD-50×10 (step 0.01, 10 restarts) and the default audit, `standard` (AutoAttack's cascade),
each model in one audit whose validity checks give the verdict.

    .venv/bin/python bench/fgsm_at_standard.py --data-root ../shared/data --n 10000 \
        --device cuda --workers 4 --out out/fgsm-at-standard.jsonl out/fgsm-te0.4-w4-s*
    .venv/bin/python bench/fgsm_at_standard.py --summarize out/fgsm-at-standard.jsonl

Each positional argument is a directory that `bench/fgsm_at_mnist.py` or `robustness train`
wrote (model.safetensors, model.json, and result.json with the recipe where there is one).
One JSON line per model is appended to --out as soon as it is audited, so an interrupted run
keeps what it finished and a rerun skips those. `--workers K` audits K models at once in
separate processes (on a GPU they share it). `--summarize` prints the markdown table of
docs/benchmarks.md from such a file, grouped by recipe.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

EPSILON = 0.3
ATTACKS = [{"name": "fgsm"},
           {"name": "pgd", "label": "pgd50x10", "steps": 50, "step_size": 0.01, "restarts": 10},
           {"name": "cascade", "preset": "standard", "label": "standard"}]
SEVERITY = {"pass": 0, "skipped": 0, "warn": 1, "fail": 2}


def recipe(folder: Path) -> dict:
    """What the model was trained with, from the files its trainer wrote beside it."""
    card = json.loads((folder / "model.json").read_text())
    training = card.get("training", {})
    spec = training.get("spec", {})
    bench = json.loads((folder / "result.json").read_text()) if (
        folder / "result.json").exists() else {}
    return {"method": spec.get("method", "?"),
            "train_epsilon": spec.get("epsilon"), "epsilon_warmup": spec.get("epsilon_warmup"),
            "steps": spec.get("steps"), "seed": spec.get("seed", bench.get("seed")),
            "selected_epoch": training.get("selected_epoch"),
            "held_out_pgd10": (training.get("history") or [{}])[
                (training.get("selected_epoch") or 1) - 1].get("pgd_accuracy"),
            "catastrophic_overfitting": training.get("catastrophic_overfitting")}


def audit_one(folder: str, n: int, data_root, device: str, batch: int, threads: int) -> dict:
    import torch

    from robustness.audit import audit_model_file
    from robustness.spec import parse_audit_spec

    torch.set_num_threads(threads)
    folder = Path(folder)
    spec = parse_audit_spec({"dataset": {"name": "mnist", "split": "test", "n": n},
                             "attacks": ATTACKS, "epsilons": [EPSILON], "batch_size": batch,
                             "seed": 0})
    t0 = time.perf_counter()
    try:
        report = audit_model_file(spec, folder / "model.safetensors", data_root=data_root,
                                  device=device).report
    except Exception:  # noqa: BLE001 - one bad model must not cost the others
        return {"model": folder.name, "error": traceback.format_exc(limit=8)}
    rows = {r["label"]: r for r in report["results"]}
    checks = [c for c in report["checks"] if c["status"] not in ("pass", "skipped")]
    return {"model": folder.name, **recipe(folder), "n": n, "device": device,
            "clean": report["clean"]["accuracy"],
            "fgsm": rows["fgsm"]["accuracy"], "pgd50x10": rows["pgd50x10"]["accuracy"],
            "standard": rows["standard"]["accuracy"],
            "stages": {s["label"]: s["accuracy"] for s in rows["standard"]["stages"]},
            "verdict": max((c["status"] for c in checks), key=SEVERITY.get, default="pass"),
            "checks": {c["id"]: {"status": c["status"], "detail": c["detail"]}
                       for c in checks},
            # Kept whatever its status: the figures say how close to a threshold it came.
            "black_box": [{"status": c["status"], **c.get("figures", {})}
                          for c in report["checks"] if c["id"] == "black_box"],
            "attack_seconds": report["provenance"]["attack_seconds"],
            "checks_seconds": report["provenance"]["checks_seconds"],
            "seconds": round(time.perf_counter() - t0, 1), "torch": torch.__version__}


def run(args) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {json.loads(line)["model"] for line in out.read_text().splitlines()
            if line.strip() and "error" not in json.loads(line)} if out.exists() else set()
    todo = [m for m in args.models if Path(m).name not in done]
    jobs = [(m, args.n, args.data_root, args.device, args.batch, args.threads) for m in todo]
    # CUDA cannot be initialised in a forked child.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.workers, mp_context=context) as pool:
        for future in as_completed([pool.submit(audit_one, *job) for job in jobs]):
            row = future.result()
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps({k: v for k, v in row.items() if k not in ("checks", "stages")}),
                  flush=True)


def pct(values: list[float]) -> str:
    return f"{100 * statistics.mean(values):.2f}"


def summarize(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "error" not in r]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        key = (r["method"], r["train_epsilon"], r["epsilon_warmup"], r["steps"])
        groups.setdefault(key, []).append(r)
    print("| recipe | seed | clean | FGSM | PGD-50×10 | standard | gap (pp) | apgd-ce | apgd-t "
          "| fab-t | square | checks not passed |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for (method, eps, warmup, steps), group in sorted(groups.items(), key=str):
        name = f"{method} ε={eps}" + (f" ramp {warmup:g}" if warmup else "") + (
            f" {steps} steps" if steps else "")
        for r in sorted(group, key=lambda r: r["seed"]):
            s = r["stages"]
            flagged = ", ".join(f"{c['status']}: {k}" for k, c in r["checks"].items()) or "pass"
            print(f"| {name} | {r['seed']} | {100 * r['clean']:.2f} | {100 * r['fgsm']:.2f} | "
                  f"{100 * r['pgd50x10']:.2f} | **{100 * r['standard']:.2f}** | "
                  f"{100 * (r['pgd50x10'] - r['standard']):.2f} | "
                  + " | ".join(f"{100 * s[k]:.2f}" for k in ("apgd-ce", "apgd-t", "fab-t",
                                                               "square"))
                  + f" | {flagged} |")
        if len(group) > 1:
            print(f"| {name}, mean of {len(group)} | | {pct([r['clean'] for r in group])} | "
                  f"{pct([r['fgsm'] for r in group])} | {pct([r['pgd50x10'] for r in group])} "
                  f"| **{pct([r['standard'] for r in group])}** | "
                  f"{100 * statistics.mean(r['pgd50x10'] - r['standard'] for r in group):.2f} "
                  "| | | | | |")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="*", help="model folders")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--n", type=int, default=10000, help="first n test images")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per worker")
    parser.add_argument("--batch", type=int, default=10000)
    parser.add_argument("--out", default="out/fgsm-at-standard.jsonl")
    parser.add_argument("--summarize", default=None, metavar="JSONL")
    args = parser.parse_args()
    if args.summarize:
        summarize(Path(args.summarize))
    else:
        run(args)


if __name__ == "__main__":
    main()
