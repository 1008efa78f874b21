"""Deliberately wrong robustness evaluations, to find which mistake reproduces a published
table. Each is a common bug in attack code, written with the library's own pieces so that the
only difference from the correct evaluation is the mistake itself. Never use these to audit.
"""

from __future__ import annotations

import torch
from torch import nn

from robustness.attacks import LinfBall, fgsm, pgd
from robustness.attacks.threat import ThreatModel

MNIST_STD = 0.3081  # transforms.Normalize((0.1307,), (0.3081,)), the usual MNIST recipe


class Softmaxed(nn.Module):
    """A model whose forward ends in softmax, attacked as if it returned logits: the
    cross-entropy the attacker differentiates is then taken of probabilities, and its
    gradient through the saturated softmax nearly vanishes."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return torch.softmax(self.model(x), 1)


class UnsignedLinf(LinfBall):
    """L∞ ball, but the step is α·∇ instead of α·sign(∇): 'FGSM' written as x + ε·grad."""

    def step(self, grad, step_size):
        return step_size * grad


# name -> (description, function(model, x, y, eps, steps) -> (x_fgsm, x_pgd))
def _correct(model, x, y, eps, steps):
    t = LinfBall(eps)
    return fgsm(model, x, y, t), pgd(model, x, y, t, steps=steps, step_size=2.5 * eps / steps)


def _scaled(factor):
    def run(model, x, y, eps, steps):
        return _correct(model, x, y, eps * factor, steps)
    return run


def _softmax_ce(model, x, y, eps, steps):
    return _correct(Softmaxed(model), x, y, eps, steps)


def _unsigned(model, x, y, eps, steps):
    t: ThreatModel = UnsignedLinf(eps)
    return (pgd(model, x, y, t, steps=1, step_size=eps, random_start=False),
            pgd(model, x, y, t, steps=steps, step_size=2.5 * eps / steps))


FLAWS = {
    "correct": (("our evaluation: ε in [0,1] pixel units, sign steps on the logits' "
                "cross-entropy"), _correct),
    "eps_normalized": (("ε applied to inputs normalized by MNIST's mean/std (effective pixel "
                       "ε = 0.3081·ε)"), _scaled(MNIST_STD)),
    "eps_255": ("ε applied to pixels in 0–255 (effective pixel ε = ε/255)", _scaled(1 / 255)),
    "softmax_ce": ("cross-entropy of a softmax output (gradients of a saturated softmax)",
                   _softmax_ce),
    "unsigned_gradient": ("step ε·∇ instead of ε·sign(∇) (raw gradient, no sign)", _unsigned),
}


def evaluate_flaws(model, x, y, eps: float = 0.3, steps: int = 40, batch: int = 500) -> dict:
    """Accuracy under FGSM and PGD-`steps` at `eps` for every flaw, on (x, y)."""
    out = {}
    for name, (_, run) in FLAWS.items():
        right = torch.zeros(2)
        for i in range(0, x.shape[0], batch):
            xb, yb = x[i:i + batch], y[i:i + batch]
            adv = run(model, xb, yb, eps, steps)
            with torch.no_grad():
                right += torch.tensor([float((model(a).argmax(1) == yb).sum()) for a in adv])
        out[name] = {"fgsm": float(right[0]) / x.shape[0], "pgd": float(right[1]) / x.shape[0]}
    return out
