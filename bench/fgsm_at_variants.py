"""Screen single-step training variants on MNIST against the same evaluation as
`fgsm_at_mnist.py` (PGD-50, step 0.01, 10 restarts at ε=0.3), on the first --n test images.

    .venv/bin/python bench/fgsm_at_variants.py VARIANT --data-root ../shared/data [--seed N] ...

This is how the "what else was tried" table of docs/benchmarks.md was measured. Variants:
`recipe` (the library's `fgsm` method: random start, step --alpha·ε; --train-eps and
--warmup apply), `nfgsm` (de Jorge et al. 2022: noise of --k·ε, step --alpha·ε, no
projection back to the ε-ball) and `ga` (GradAlign, Andriushchenko & Flammarion 2020: the
`recipe` loss plus --lam·(1 − cos) of the input gradients at two random points of the ball).
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
from fgsm_at_mnist import SPEC, evaluate

from robustness.training import (
    from_spec,
    methods,
    parse_training_spec,
    save_training,
    train_from_spec,
)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("variant", choices=["recipe", "nfgsm", "ga"])
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

    def uniform(x, gen, scale):
        return (torch.rand(x.shape, generator=gen) * 2 - 1) * scale

    def nfgsm(spec, resolved, gen, batches):
        """No projection, so the library's `ascend` (which projects) cannot express it."""
        ramp = methods._ramp(round(a.warmup * batches))

        def loss(model, x, y):
            eps = a.train_eps * ramp()
            noise = uniform(x, gen, a.k * eps).requires_grad_(True)
            (g,) = torch.autograd.grad(F.cross_entropy(model(x + noise), y), noise)
            return F.cross_entropy(model((x + noise.detach() + a.alpha * eps * g.sign())
                                         .clamp(0, 1)), y)
        return loss

    def ga(spec, resolved, gen, batches):
        base = library_loss(spec, resolved, gen, batches)

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

    library_loss = from_spec._method_loss
    if a.variant != "recipe":
        from_spec._method_loss = {"nfgsm": nfgsm, "ga": ga}[a.variant]

    spec = parse_training_spec({
        **SPEC, "name": f"variant-{a.variant}", "architecture": a.arch,
        "epsilon": a.train_eps, "step_size": a.alpha * a.train_eps, "epochs": a.epochs,
        "lr": a.lr, "seed": a.seed, "validation": {**SPEC["validation"], "epsilon": 0.3},
        "on_catastrophic_overfitting": "continue" if a.cont else "stop",
        **({"epsilon_warmup": a.warmup} if a.warmup else {})})
    tag = (f"{a.variant}-s{a.seed}-te{a.train_eps}-a{a.alpha}-w{a.warmup}-k{a.k}-l{a.lam}"
           f"-{a.arch}-lr{a.lr}")
    out = Path(a.out_dir) / tag
    t0 = time.perf_counter()
    result = train_from_spec(spec, data_root=a.data_root, device="cpu",
                             log=lambda e: print(json.dumps(e), flush=True))
    from_spec._method_loss = library_loss
    train_s = time.perf_counter() - t0
    weights = save_training(result, out)
    t = result.card["training"]
    summary = {"tag": tag, "held_out_pgd10": [h["pgd_accuracy"] for h in t["history"]],
               "selected_epoch": t["selected_epoch"],
               "catastrophic_overfitting": t["catastrophic_overfitting"],
               "train_seconds": round(train_s)}
    if a.n:
        t1 = time.perf_counter()
        ev = evaluate(weights, a.n, a.data_root, 1, a.threads)
        ev.pop("reports")
        summary.update(ev, n=a.n, eval_seconds=round(time.perf_counter() - t1))
    (out / "result.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
