"""FGSM (L∞) and FGM (L2): a single full-size gradient step, i.e. PGD with one step of size ε
from x. Kept as its own name because users and papers ask for it by that name.

The step from x points the same way at every ε, so a whole ε grid costs one forward+backward
pass and a forward per ε (`fgsm_grid`), where attacking ε by ε costs a pass per ε.
"""

from __future__ import annotations

import torch

from robustness.attacks.losses import LOSSES, margin
from robustness.attacks.threat import ThreatModel, threat_model


def fgsm_grid(model, x: torch.Tensor, y: torch.Tensor, norm: str, epsilons: list[float], *,
              loss: str = "ce", clean_logits: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Adversarial inputs at each ε of `epsilons`; an example whose step does not raise its
    margin keeps x (as PGD keeps the best point it visited)."""
    with torch.no_grad():
        clean_m = margin(model(x) if clean_logits is None else clean_logits, y)
    x_in = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(LOSSES[loss](model(x_in), y).sum(), x_in)
    out = []
    for eps in epsilons:
        threat = threat_model(norm, eps)
        x_adv = x + threat.clip(x, threat.step(grad, eps))
        with torch.no_grad():
            better = margin(model(x_adv), y) > clean_m
        out.append(torch.where(better.view(-1, *([1] * (x.dim() - 1))), x_adv, x))
    return out


def fgsm(model, x, y, threat: ThreatModel, *, loss: str = "ce", clean_logits=None, **_):
    return fgsm_grid(model, x, y, threat.norm, [threat.eps], loss=loss,
                     clean_logits=clean_logits)[0]
