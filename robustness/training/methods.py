"""Per-batch training objectives, one per method: `loss(model, x, target) -> scalar`.

Every adversarial method finds its training points with the same `ascend` loop that
evaluation PGD uses; they differ only in start, step count and the objective ascended.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from robustness.attacks.losses import cross_entropy
from robustness.attacks.pgd import ascend
from robustness.attacks.threat import threat_model


def standard(model, x, y):
    return F.cross_entropy(model(x), y)


def gaussian(sigma: float, generator: torch.Generator):
    """Gaussian data augmentation (Cohen et al. 2019): cross-entropy on x + N(0, σ²I), not
    clipped to [0, 1], exactly the noise randomized smoothing certifies under, so the base
    classifier learns to classify what the smoothed one will show it."""

    def loss(model, x, y):
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        return F.cross_entropy(model(x + sigma * noise), y)

    return loss


def _ramp(warmup_steps: int):
    """Fraction of the full ε at each successive call (one call per training step): a linear
    ramp from 1/warmup_steps to 1, then 1. Early PGD-AT at full ε can push a network that is
    still at chance into predicting a constant, from which it does not recover in few epochs."""
    calls = 0

    def fraction() -> float:
        nonlocal calls
        calls += 1
        return 1.0 if calls >= warmup_steps else calls / warmup_steps

    return fraction


def adversarial(*, norm: str, epsilon: float, steps: int, step_size: float,
                random_start: bool, generator: torch.Generator, warmup_steps: int = 0):
    """FGSM-AT (steps=1, step 1.25ε, random start: Wong et al. 2020) and PGD-AT (Madry et al.):
    train on the last iterate of an ascent on cross-entropy from a random point of the ball.

    The random start is *not* clipped into the [0, 1] box before the first gradient, as in Wong
    et al.'s code, and this matters on MNIST: most pixels sit at 0, where a clipped start is 0
    half the time and in [0, ε] otherwise, and one step of 1.25ε then lands every background
    pixel on exactly 0 or ε. The start's randomness is gone, and so is the protection against
    catastrophic overfitting it gives; we measured PGD accuracy near 0 from the first epoch on.
    """
    ramp = _ramp(warmup_steps)

    def loss(model, x, y):
        f = ramp()
        threat = threat_model(norm, epsilon * f)
        start = threat.random_init(x, generator) if random_start else torch.zeros_like(x)
        delta = ascend(model, x, y, threat, start, steps=steps, step_size=step_size * f,
                       objective=cross_entropy, clip_start=False)
        return F.cross_entropy(model(x + delta), y)

    return loss


def _kl_to(logits: torch.Tensor, p_clean: torch.Tensor) -> torch.Tensor:
    """Per-example KL(p_clean ‖ softmax(logits))."""
    return (p_clean * (p_clean.clamp_min(1e-12).log() - F.log_softmax(logits, 1))).sum(1)


def trades(*, norm: str, epsilon: float, steps: int, step_size: float, beta: float,
           generator: torch.Generator, warmup_steps: int = 0):
    """TRADES (Zhang et al. 2019): clean cross-entropy plus β·KL between the clean and the
    adversarial prediction; the inner ascent maximises that KL from a tiny Gaussian start."""
    ramp = _ramp(warmup_steps)

    def loss(model, x, y):
        f = ramp()
        threat = threat_model(norm, epsilon * f)
        logits = model(x)
        p_clean = F.softmax(logits.detach(), 1)
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        delta = ascend(model, x, p_clean, threat, 0.001 * noise, steps=steps,
                       step_size=step_size * f, objective=_kl_to)
        robust = _kl_to(model(x + delta), F.softmax(logits, 1)).mean()
        return F.cross_entropy(logits, y) + beta * robust

    return loss


def at_temperature(temperature: float):
    """Teacher training for distillation: cross-entropy on logits / T."""

    def loss(model, x, y):
        return F.cross_entropy(model(x) / temperature, y)

    return loss


def soft_labels(temperature: float):
    """Student training: cross-entropy against the teacher's softmax at T (Papernot et al.)."""

    def loss(model, x, soft):
        return -(soft * F.log_softmax(model(x) / temperature, 1)).sum(1).mean()

    return loss
