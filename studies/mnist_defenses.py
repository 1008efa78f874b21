"""The MNIST defense study, reproduced honestly: train five defenses, sweep ε 0–0.4 with
FGSM, PGD-40 with restarts, PGD on the CW margin loss and CW-L2, and write
docs/results/mnist-defenses.md beside the published table it checks.

    make study-mnist            # = .venv/bin/python studies/mnist_defenses.py --data-root ../shared/data

Models are cached in --out-dir (retrained only when their spec changes or with --retrain), so
re-rendering the document after an edit is cheap: --render-only reads results.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from flawed_evaluation import FLAWS, evaluate_flaws
from render_mnist_defenses import render

EPSILONS = [round(0.05 * i, 2) for i in range(9)]  # 0.0 … 0.4
COMMON = {"architecture": "wong_mnist", "dataset": {"name": "mnist", "split": "train"},
          "batch_size": 100, "seed": 0, "validation": {"n": 1000, "steps": 10}}
ADV = {"epsilon": 0.3, "lr": 5e-3, "lr_schedule": "cyclic", "epochs": 10}
MODELS = {
    "baseline": ("baseline CNN (standard training)",
                 {"method": "standard", "epsilon": 0.3, "epochs": 5, "lr": 1e-3}),
    "fgsm": ("FGSM-AT (Wong et al.: random start, step 1.25ε)",
             {**ADV, "method": "fgsm", "step_size": 0.375}),
    "fgsm_zero": ("FGSM-AT without random start (step ε)",
                  {**ADV, "method": "fgsm", "step_size": 0.3, "random_start": False,
                   "on_catastrophic_overfitting": "continue"}),
    # Ten times FGSM-AT's cost per epoch, so 6 epochs instead of 10 to fit the CPU budget.
    "pgd": ("PGD-AT (10 steps of 0.075)", {**ADV, "method": "pgd", "steps": 10, "epochs": 6}),
    "trades": ("TRADES (β=1, 10 steps)",
               {**ADV, "method": "trades", "steps": 10, "beta": 1.0, "epochs": 6}),
    "distillation": ("defensive distillation (T=100)",
                     {"method": "distillation", "temperature": 100, "epsilon": 0.3,
                      "epochs": 5, "lr": 1e-3}),
}
AUDIT = {"dataset": {"name": "mnist", "split": "test", "offset": 0},
         "attacks": [{"name": "fgsm"},
                     {"name": "pgd", "label": "pgd", "steps": 40, "restarts": 3},
                     {"name": "pgd", "label": "pgd_cw", "loss": "margin", "steps": 40},
                     {"name": "cw", "steps": 100, "binary_search_steps": 5,
                      "epsilons": [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]}],
         "epsilons": EPSILONS, "top_k": 3, "seed": 0, "batch_size": 500}


def train_or_load(name: str, spec: dict, out: Path, data_root, retrain: bool) -> tuple[Path, dict]:
    from robustness.training import parse_training_spec, save_training, train_from_spec

    parsed = parse_training_spec({**COMMON, "name": f"mnist-{name}", **spec})
    card_path = out / name / "model.json"
    if card_path.is_file() and not retrain:
        card = json.loads(card_path.read_text())
        if card["training"]["spec"] == json.loads(json.dumps(parsed.resolved())):
            print(f"[{name}] reusing {card_path.parent}", file=sys.stderr)
            return out / name / "model.safetensors", card
    print(f"[{name}] training ...", file=sys.stderr)

    def log(e):
        print(f"[{name}] {e['phase']} epoch {e['epoch']} loss {e['loss']:.4f} clean "
              f"{e['clean_accuracy']} fgsm {e['fgsm_accuracy']} pgd {e['pgd_accuracy']}",
              file=sys.stderr, flush=True)

    result = train_from_spec(parsed, data_root=data_root, device="cpu", log=log)
    weights = save_training(result, out / name)
    return weights, result.card


def summarize(report: dict) -> dict:
    """Accuracy per attack and ε, plus confidences of the misclassified adversarials."""
    acc = {}
    for r in report["results"]:
        acc.setdefault(r["label"], {})[str(r["epsilon"])] = r["accuracy"]
    y = torch.tensor(report["examples"]["label"])
    confidences = {}
    for adv in report["examples"]["adversarial"]:
        if adv["label"] in ("pgd", "pgd_cw") and adv["epsilon"] == 0.3:
            wrong = torch.tensor(adv["pred"]) != y
            confidences[adv["label"]] = torch.tensor(adv["confidence"])[wrong].tolist()
    cw = next((m for m in report["minimal_perturbation"] if m["label"] == "cw"), None)
    return {"clean": report["clean"]["accuracy"], "accuracy": acc,
            "error_confidences": confidences, "cw": cw}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out-dir", default="out/study-mnist")
    parser.add_argument("--doc", default="docs/results/mnist-defenses.md")
    parser.add_argument("--n", type=int, default=1000, help="test images (the first n)")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--render-only", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: "
                        "torch's choice, one per core)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    if not args.render_only:
        from robustness.audit import audit_model_file
        from robustness.data import load_dataset
        from robustness.models import load_model
        from robustness.spec import parse_audit_spec

        audit_spec = parse_audit_spec({**AUDIT, "dataset": {**AUDIT["dataset"], "n": args.n}})
        test = load_dataset(audit_spec.dataset, args.data_root)
        results = {"n": args.n, "threads": torch.get_num_threads(), "torch": torch.__version__,
                   "audit_spec": audit_spec.model_dump(exclude_none=True), "models": {}}
        for name in args.models.split(","):
            title, spec = MODELS[name]
            weights, card = train_or_load(name, spec, out, args.data_root, args.retrain)
            print(f"[{name}] auditing ...", file=sys.stderr)
            t0 = time.perf_counter()
            report = audit_model_file(audit_spec, weights, None, data_root=args.data_root,
                                      device="cpu").report
            audit_seconds = time.perf_counter() - t0
            (out / name / "report.json").write_text(json.dumps(report))
            model = load_model(weights, device="cpu").eval().requires_grad_(False)
            flaws = evaluate_flaws(model, test.x, test.y)
            t = card["training"]
            results["models"][name] = {
                "title": title, **summarize(report), "flaws": flaws,
                "training": {"spec": t["spec"], "epochs_run": t["epochs_run"],
                             "selected_epoch": t["selected_epoch"],
                             "catastrophic_overfitting": t["catastrophic_overfitting"],
                             "history": t["history"], "teacher": t.get("teacher"),
                             "seconds": card["provenance"]["seconds"]},
                "audit_seconds": round(audit_seconds, 1)}
            results_path.write_text(json.dumps(results, indent=1))
    results = json.loads(results_path.read_text())
    render(results, FLAWS, Path(args.doc))
    print(f"wrote {args.doc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
