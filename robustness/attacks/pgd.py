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
           observe: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None] | None = None,
           clip_start: bool = True,
           until: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
           ) -> torch.Tensor:
    """Take `steps` ascent steps on `objective` from x + delta; returns the final valid delta.

    `observe(x_adv, logits, rows)` sees every iterate with the logits the step computed anyway
    (`rows`: which rows of x they are). `until(logits, rows)`, when given, says which rows are
    done: they leave the batch and keep the point they were done at, so an accuracy-only
    phase spends no passes on an example once it is misclassified.
    Gradients are taken with respect to the input point only, so no parameter gradient
    accumulates.
    `threat` and `step_size` may hold one value per row (robustness.attacks.threat).
    `clip_start=False` takes the first gradient at the raw start even outside the [0, 1] box
    (only the returned delta must be valid); see `training.methods.adversarial` for why.
    """
    delta = threat.clip(x, delta.detach()) if clip_start else delta.detach()
    x_adv, valid = x + delta, threat.projector(x)
    rows = torch.arange(x.shape[0], device=x.device)
    out = delta.clone() if until is not None else None
    for _ in range(steps):
        x_adv.requires_grad_(True)
        logits = model(x_adv)
        (grad,) = torch.autograd.grad(objective(logits, target).sum(), x_adv)
        x_adv, logits = x_adv.detach(), logits.detach()
        if observe is not None:
            observe(x_adv, logits, rows)
        stepped = valid(threat.ascent(x_adv, grad, step_size))
        if until is not None:
            done = until(logits, rows)
            if done.any():
                out[rows[done]] = x_adv[done] - x[done]
                keep = ~done
                x, target, rows, stepped = x[keep], target[keep], rows[keep], stepped[keep]
                threat, step_size = threat.rows(keep), _rows(step_size, keep)
                if rows.numel() == 0:
                    return out
                valid = threat.projector(x)
        x_adv = stepped
    if out is None:
        return x_adv - x
    out[rows] = x_adv - x
    return out


def _rows(v, rows: torch.Tensor):
    """A per-row tensor narrowed to `rows`; a number as is."""
    return v[rows] if isinstance(v, torch.Tensor) else v


@torch.no_grad()
def keep_best(best_x, best_m, x_new, m_new, rows):
    """Per example of `rows` (distinct indices in ascending order), keep x_new where its
    margin beats the best so far (shared by every attack that reports the most confidently
    wrong point it visited)."""
    better = m_new > best_m[rows]
    if rows.numel() == best_x.shape[0]:  # every row, in order: one pass, no gather
        torch.where(better.view(-1, *[1] * (x_new.dim() - 1)), x_new, best_x, out=best_x)
        torch.where(better, m_new, best_m, out=best_m)
        return
    idx = rows[better]
    best_x[idx] = x_new[better]
    best_m[idx] = m_new[better]


def pgd(model, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, steps: int,
        step_size: float, restarts: int = 1, random_start: bool = True, loss: str = "ce",
        targets: int = 0, generator: torch.Generator | None = None,
        clean_logits: torch.Tensor | None = None, until_broken: bool = False,
        start: torch.Tensor | None = None, aim: torch.Tensor | None = None) -> torch.Tensor:
    """Return adversarial inputs within `threat` of x (and in [0, 1]; ε and `step_size` may
    be per example). With `targets` = k > 0, the targeted attack towards each of the k
    classes the model ranks highest after the true one, in turn, on the rows still robust. `until_broken` stops each example at its first
    misclassified iterate (a verdict, not the most confident point); `start` (a δ per row)
    replaces the random or zero start, to continue from a known point; `aim` (a class per
    row) makes it the targeted attack towards those classes."""
    if clean_logits is None:
        with torch.no_grad():
            clean_logits = model(x)
    best_x = x.clone()
    best_m = margin(clean_logits, y).detach().clone()
    aims = [aim] if aim is not None else runner_ups(clean_logits, y, targets) if targets \
        else [None]
    for towards in aims:
        objective = LOSSES[loss] if towards is None else TARGETED[loss]
        for _ in range(restarts):
            rows = torch.nonzero(best_m <= 0).squeeze(1)
            if rows.numel() == 0:
                return best_x
            xs, ys, ball = x[rows], y[rows], threat.rows(rows)
            if start is not None:
                init = start[rows]
            else:
                init = ball.random_init(xs, generator) if random_start else torch.zeros_like(xs)

            def observe(x_adv, logits, sub, ys=ys, rows=rows):
                keep_best(best_x, best_m, x_adv, margin(logits, ys[sub]), rows[sub])

            def broken(logits, sub, ys=ys):
                return margin(logits, ys[sub]) > 0

            delta = ascend(model, xs, ys if towards is None else towards[rows], ball, init,
                           steps=steps, step_size=_rows(step_size, rows), objective=objective,
                           observe=observe, until=broken if until_broken else None)
            with torch.no_grad():
                keep_best(best_x, best_m, xs + delta, margin(model(xs + delta), ys), rows)
    return best_x
