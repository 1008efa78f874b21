"""Screen single-step training variants on MNIST against the same evaluation as
`fgsm_at_mnist.py` (PGD-50, step 0.01, 10 restarts at ε=0.3), on the first --n test images.

    .venv/bin/python bench/fgsm_at_variants.py VARIANT --data-root ../shared/data [--seed N] ...

This is how the "what else was tried" table of docs/benchmarks.md was measured. Variants:
`recipe` (the library's `fgsm` method; --train-eps and --warmup apply), `rs` (the same
random-start FGSM written out, with step --alpha·ε), `nfgsm` (de Jorge et al. 2022: noise of
--k·ε, step --alpha·ε, no projection back to the ε-ball) and `ga` (GradAlign, Andriushchenko &
Flammarion 2020: `rs` plus --lam·(1 − cos) of the input gradients at two random points).
Only `recipe` is a method of the library; the others exist here to be compared and were not
adopted (see docs/benchmarks.md). --n 0 trains only and prints the held-out PGD-10 history.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from robustness.audit import audit_model_file
from robustness.spec import parse_audit_spec
from robustness.training import job, parse_training_spec, save_training, train_from_spec


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("variant", choices=["recipe", "rs", "nfgsm", "ga"])
    p.add_argument("--data-root", default=None)
    p.add_argument("--out-dir", default="out/fgsm-at-variants")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=1000, help="test images; 0: train only")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--k", type=float, default=2.0, help="nfgsm: noise magnitude / ε")
    p.add_argument("--alpha", type=float, default=1.25, help="step / ε")
    p.add_argument("--lam", type=float, default=0.2, help="ga: weight of the alignment term")
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--arch", default="wong_mnist")
    p.add_argument("--warmup", type=float, default=0.0, help="epochs of linear ε ramp")
    p.add_argument("--train-eps", type=float, default=0.3)
    p.add_argument("--cont", action="store_true", help="on_catastrophic_overfitting: continue")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    batches = 590  # 59,000 training images in batches of 100
    calls = [0]

    def eps_now() -> float:
        calls[0] += 1
        w = a.warmup * batches
        return a.train_eps * (1.0 if not w or calls[0] >= w else calls[0] / w)

    def uniform(x, gen, scale):
        return (torch.rand(x.shape, generator=gen) * 2 - 1) * scale

    def rs(gen):
        def loss(model, x, y):
            eps = eps_now()
            noise = uniform(x, gen, eps).requires_grad_(True)
            (g,) = torch.autograd.grad(F.cross_entropy(model(x + noise), y), noise)
            delta = (noise.detach() + a.alpha * eps * g.sign()).clamp(-eps, eps)
            return F.cross_entropy(model((x + delta).clamp(0, 1)), y)
        return loss

    def nfgsm(gen):
        def loss(model, x, y):
            eps = eps_now()
            noise = uniform(x, gen, a.k * eps).requires_grad_(True)
            (g,) = torch.autograd.grad(F.cross_entropy(model(x + noise), y), noise)
            return F.cross_entropy(model((x + noise.detach() + a.alpha * eps * g.sign())
                                         .clamp(0, 1)), y)
        return loss

    def ga(gen):
        base = rs(gen)

        def loss(model, x, y):
            grads = []
            for _ in range(2):
                e = uniform(x, gen, a.train_eps).requires_grad_(True)
                (g,) = torch.autograd.grad(F.cross_entropy(model(x + e), y), e,
                                           create_graph=True)
                grads.append(g.flatten(1))
            cos = F.cosine_similarity(grads[0], grads[1], dim=1)
            return base(model, x, y) + a.lam * (1 - cos).mean()
        return loss

    variants = {"rs": rs, "nfgsm": nfgsm, "ga": ga}
    library_loss = job._method_loss
    if a.variant != "recipe":
        job._method_loss = lambda spec, r, gen, bpe: variants[a.variant](gen)

    spec = parse_training_spec({
        "name": f"variant-{a.variant}", "architecture": a.arch,
        "dataset": {"name": "mnist", "split": "train"}, "method": "fgsm",
        "epsilon": a.train_eps, "step_size": a.alpha * a.train_eps, "lr_schedule": "cyclic",
        "epochs": a.epochs, "batch_size": 100, "lr": a.lr, "seed": a.seed,
        "validation": {"n": 1000, "steps": 10, "epsilon": 0.3},
        "on_catastrophic_overfitting": "continue" if a.cont else "stop",
        **({"epsilon_warmup": a.warmup} if a.warmup else {})})
    tag = (f"{a.variant}-s{a.seed}-te{a.train_eps}-a{a.alpha}-w{a.warmup}-k{a.k}-l{a.lam}"
           f"-{a.arch}-lr{a.lr}")
    out = Path(a.out_dir) / tag
    t0 = time.perf_counter()
    result = train_from_spec(spec, data_root=a.data_root, device="cpu",
                             log=lambda e: print(json.dumps(e), flush=True))
    job._method_loss = library_loss
    train_s = time.perf_counter() - t0
    weights = save_training(result, out)
    t = result.card["training"]
    summary = {"tag": tag, "held_out_pgd10": [h["pgd_accuracy"] for h in t["history"]],
               "selected_epoch": t["selected_epoch"],
               "catastrophic_overfitting": t["catastrophic_overfitting"],
               "train_seconds": round(train_s)}
    if a.n:
        audit = parse_audit_spec({
            "dataset": {"name": "mnist", "split": "test", "n": a.n},
            "attacks": [{"name": "fgsm"},
                        {"name": "pgd", "steps": 50, "step_size": 0.01, "restarts": 10}],
            "epsilons": [0.3], "batch_size": 1000, "seed": 0})
        t1 = time.perf_counter()
        report = audit_model_file(audit, weights, None, data_root=a.data_root,
                                  device="cpu").report
        acc = {r["label"]: r["accuracy"] for r in report["results"]}
        summary.update(clean=report["clean"]["accuracy"], fgsm=acc["fgsm"],
                       pgd50x10=acc["pgd"], n=a.n, eval_seconds=round(time.perf_counter() - t1))
    (out / "result.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
