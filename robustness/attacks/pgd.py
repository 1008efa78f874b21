"""Projected gradient descent, once for every norm (the threat model supplies the geometry).

Per example the attack keeps the iterate with the largest margin over all steps and restarts
(not just the last one): an example counts as broken if *any* point it visited was
misclassified, and among those we report the most confidently wrong. Restarts only re-attack
examples that are still robust. Cost: steps forward+backward passes per restart plus one
forward for the final iterate.
"""

from __future__ import annotations

import torch

from robustness.attacks.losses import LOSSES, margin
from robustness.attacks.threat import ThreatModel


@torch.no_grad()
def _keep_best(best_x, best_m, x_new, m_new, rows):
    better = m_new > best_m[rows]
    idx = rows[better]
    best_x[idx] = x_new[better]
    best_m[idx] = m_new[better]


def pgd(model, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, steps: int,
        step_size: float, restarts: int = 1, random_start: bool = True, loss: str = "ce",
        generator: torch.Generator | None = None,
        clean_logits: torch.Tensor | None = None) -> torch.Tensor:
    """Return adversarial inputs within `threat` of x (and in [0, 1])."""
    objective = LOSSES[loss]
    if clean_logits is None:
        with torch.no_grad():
            clean_logits = model(x)
    best_x = x.clone()
    best_m = margin(clean_logits, y).detach().clone()
    for _ in range(restarts):
        rows = torch.nonzero(best_m <= 0).squeeze(1)
        if rows.numel() == 0:
            break
        xs, ys = x[rows], y[rows]
        delta = threat.random_init(xs, generator) if random_start else torch.zeros_like(xs)
        delta = threat.clip(xs, delta)
        for _ in range(steps):
            delta.requires_grad_(True)
            logits = model(xs + delta)
            (grad,) = torch.autograd.grad(objective(logits, ys).sum(), delta)
            delta = delta.detach()
            _keep_best(best_x, best_m, xs + delta, margin(logits.detach(), ys), rows)
            delta = threat.clip(xs, delta + threat.step(grad, step_size))
        with torch.no_grad():
            _keep_best(best_x, best_m, xs + delta, margin(model(xs + delta), ys), rows)
    return best_x
