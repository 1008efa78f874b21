"""Threat models: an Lp ball of radius ε around x, intersected with the input box [0, 1].

PGD is written once against this interface (random start, ascent step, projection), so every
norm shares one loop. Clamping x + δ into [0, 1] only shrinks |δ_i|, so a projected-then-clamped
δ stays inside the ball.

ε is a number, or a tensor with one radius per example: the breaking-ε search attacks
examples at different ε in one batch (`rows` narrows such a ball to a subset of them).
"""

from __future__ import annotations

import torch


def _per_example(v: torch.Tensor) -> torch.Tensor:
    """Reshape a per-example vector [B] so it broadcasts over [B, C, H, W]."""
    return v.view(v.shape[0], 1, 1, 1)


def per_example(v, rows: torch.Tensor | None = None):
    """A number as is; a per-example tensor [B] (narrowed to `rows`) shaped to broadcast
    over [B, C, H, W]."""
    if not isinstance(v, torch.Tensor):
        return v
    return _per_example(v if rows is None else v[rows])


def flat_norm(delta: torch.Tensor, p: float) -> torch.Tensor:
    return delta.flatten(1).norm(p=p, dim=1)


class ThreatModel:
    norm: str

    def __init__(self, eps: float | torch.Tensor):
        self.eps = eps if isinstance(eps, torch.Tensor) else float(eps)

    def rows(self, rows: torch.Tensor) -> ThreatModel:
        """The same ball for a subset of the examples."""
        return self if not isinstance(self.eps, torch.Tensor) else type(self)(self.eps[rows])

    def random_init(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError

    def step(self, grad: torch.Tensor, step_size: float) -> torch.Tensor:
        """The ascent step for a gradient: steepest direction of this norm, scaled."""
        raise NotImplementedError

    def project(self, delta: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def size(self, delta: torch.Tensor) -> torch.Tensor:
        """Per-example size of a perturbation in this norm."""
        raise NotImplementedError

    def clip(self, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """Project onto the ball, then into the input box; returns the valid δ."""
        return (x + self.project(delta)).clamp_(0.0, 1.0) - x

    def projector(self, x: torch.Tensor):
        """x_new ↦ the valid point for x + (x_new - x) (`clip`), prepared once per x: the
        loop of an iterative attack then moves points, not perturbations."""
        return lambda x_new: x + self.clip(x, x_new - x)

    def ascent(self, x_adv: torch.Tensor, grad: torch.Tensor, step_size) -> torch.Tensor:
        """x_adv moved by one ascent step (not yet projected)."""
        return x_adv + self.step(grad, step_size)


class LinfBall(ThreatModel):
    norm = "linf"

    def random_init(self, x, generator):
        u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device="cpu").to(x.device)
        return (2 * u - 1) * per_example(self.eps)

    def step(self, grad, step_size):
        return per_example(step_size) * grad.sign()

    def project(self, delta):
        eps = per_example(self.eps)
        return delta.clamp(-eps, eps)

    def projector(self, x):
        # The ball and the box meet in one box per pixel: one clamp per step.
        eps = per_example(self.eps)
        low, high = (x - eps).clamp_(min=0.0), (x + eps).clamp_(max=1.0)
        return lambda x_new: torch.clamp(x_new, low, high)

    def ascent(self, x_adv, grad, step_size):
        if isinstance(step_size, torch.Tensor):
            return torch.addcmul(x_adv, grad.sign(), per_example(step_size))
        return x_adv.add(grad.sign(), alpha=step_size)

    def size(self, delta):
        return flat_norm(delta, float("inf"))


class L2Ball(ThreatModel):
    norm = "l2"

    def random_init(self, x, generator):
        # Uniform direction, radius uniform in [0, ε]: cheap and covers the ball's interior.
        g = torch.randn(x.shape, generator=generator, dtype=x.dtype, device="cpu").to(x.device)
        r = torch.rand(x.shape[0], generator=generator, dtype=x.dtype, device="cpu").to(x.device)
        return g / _per_example(flat_norm(g, 2).clamp_min(1e-12)) * _per_example(r * self.eps)

    def step(self, grad, step_size):
        return per_example(step_size) * grad / _per_example(flat_norm(grad, 2).clamp_min(1e-12))

    def project(self, delta):
        n = flat_norm(delta, 2)
        return delta * _per_example((self.eps / n.clamp_min(1e-12)).clamp(max=1.0))

    def size(self, delta):
        return flat_norm(delta, 2)


THREAT_MODELS = {"linf": LinfBall, "l2": L2Ball}


def threat_model(norm: str, eps: float | torch.Tensor) -> ThreatModel:
    return THREAT_MODELS[norm](eps)
