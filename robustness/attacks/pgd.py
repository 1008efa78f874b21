"""Projected gradient descent, once for every norm (the threat model supplies the geometry).

`ascend` is the one loop: evaluation PGD, FGSM, and the inner maximisation of every
adversarial-training method (FGSM-AT, PGD-AT, TRADES) call it with their own objective.

Evaluation PGD keeps, per example, the iterate with the largest margin over all steps and
restarts (not just the last one): an example counts as broken if *any* point it visited was
misclassified, and among those we report the most confidently wrong. Restarts only re-attack
examples that are still robust. Cost: steps forward+backward passes per restart plus one
forward for the final iterate.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from robustness.attacks.losses import LOSSES, TARGETED, margin, runner_ups
from robustness.attacks.threat import ThreatModel

# objective(logits, target) -> per-example loss to maximise; target is labels or, for TRADES,
# the clean probabilities.
Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def ascend(model, x: torch.Tensor, target: torch.Tensor, threat: ThreatModel,
           delta: torch.Tensor, *, steps: int, step_size: float, objective: Objective,
           observe: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
           clip_start: bool = True) -> torch.Tensor:
    """Take `steps` ascent steps on `objective` from x + delta; returns the final valid delta.

    `observe(x_adv, logits)` sees every iterate with the logits the step computed anyway.
    Gradients are taken with respect to delta only, so no parameter gradient accumulates.
    `clip_start=False` takes the first gradient at the raw start even outside the [0, 1] box
    (only the returned delta must be valid); see `training.methods.adversarial` for why.
    """
    delta = threat.clip(x, delta.detach()) if clip_start else delta.detach()
    for _ in range(steps):
        delta.requires_grad_(True)
        logits = model(x + delta)
        (grad,) = torch.autograd.grad(objective(logits, target).sum(), delta)
        delta = delta.detach()
        if observe is not None:
            observe(x + delta, logits.detach())
        delta = threat.clip(x, delta + threat.step(grad, step_size))
    return delta


@torch.no_grad()
def keep_best(best_x, best_m, x_new, m_new, rows):
    """Per example of `rows`, keep x_new where its margin beats the best so far (shared by
    every attack that reports the most confidently wrong point it visited)."""
    better = m_new > best_m[rows]
    idx = rows[better]
    best_x[idx] = x_new[better]
    best_m[idx] = m_new[better]


def pgd(model, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, steps: int,
        step_size: float, restarts: int = 1, random_start: bool = True, loss: str = "ce",
        targets: int = 0, generator: torch.Generator | None = None,
        clean_logits: torch.Tensor | None = None) -> torch.Tensor:
    """Return adversarial inputs within `threat` of x (and in [0, 1]). With `targets` = k > 0,
    the targeted attack towards each of the k classes the model ranks highest after the true
    one, in turn, on the rows still robust."""
    if clean_logits is None:
        with torch.no_grad():
            clean_logits = model(x)
    best_x = x.clone()
    best_m = margin(clean_logits, y).detach().clone()
    for aim in runner_ups(clean_logits, y, targets) if targets else [None]:
        objective = LOSSES[loss] if aim is None else TARGETED[loss]
        for _ in range(restarts):
            rows = torch.nonzero(best_m <= 0).squeeze(1)
            if rows.numel() == 0:
                return best_x
            xs, ys = x[rows], y[rows]
            start = threat.random_init(xs, generator) if random_start else torch.zeros_like(xs)

            def observe(x_adv, logits, ys=ys, rows=rows):
                keep_best(best_x, best_m, x_adv, margin(logits, ys), rows)

            delta = ascend(model, xs, ys if aim is None else aim[rows], threat, start,
                           steps=steps, step_size=step_size, objective=objective,
                           observe=observe)
            with torch.no_grad():
                keep_best(best_x, best_m, xs + delta, margin(model(xs + delta), ys), rows)
    return best_x
