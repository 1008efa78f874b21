"""Attacks behind one call: `run_attack(spec, model, x, y, eps, ...)`.

Bounded attacks (FGSM, PGD) take ε and return points inside the ε-ball. Minimum-norm attacks
(CW-L2, DeepFool) ignore ε and return the smallest adversarial they found plus a `found` mask;
the evaluation decides per ε whether that counts.
"""

from robustness.attacks.cw import carlini_wagner_l2
from robustness.attacks.deepfool import deepfool
from robustness.attacks.fgsm import fgsm
from robustness.attacks.pgd import pgd
from robustness.attacks.threat import L2Ball, LinfBall, ThreatModel, threat_model

__all__ = [
    "L2Ball",
    "LinfBall",
    "ThreatModel",
    "bounded_attack",
    "carlini_wagner_l2",
    "deepfool",
    "fgsm",
    "minimum_norm_attack",
    "pgd",
    "pgd_step_size",
    "threat_model",
]


def pgd_step_size(spec, eps: float) -> float:
    """Madry et al.'s rule when unset: 2.5·ε/steps reaches the boundary from any start."""
    return spec.step_size if spec.step_size is not None else 2.5 * eps / spec.steps


def bounded_attack(spec, model, x, y, eps, *, generator=None, clean_logits=None):
    threat = threat_model(spec.norm, eps)
    if spec.name == "fgsm":
        return fgsm(model, x, y, threat, loss=spec.loss, clean_logits=clean_logits)
    if spec.name == "pgd":
        return pgd(model, x, y, threat, steps=spec.steps, step_size=pgd_step_size(spec, eps),
                   restarts=spec.restarts, random_start=spec.random_start, loss=spec.loss,
                   generator=generator, clean_logits=clean_logits)
    raise ValueError(f"{spec.name} is not a bounded attack")


def minimum_norm_attack(spec, model, x, y, *, clean_logits=None):
    if spec.name == "cw":
        return carlini_wagner_l2(model, x, y, steps=spec.steps,
                                 binary_search_steps=spec.binary_search_steps,
                                 initial_const=spec.initial_const,
                                 confidence=spec.confidence, lr=spec.lr)
    if spec.name == "deepfool":
        return deepfool(model, x, y, steps=spec.steps, overshoot=spec.overshoot,
                        candidates=spec.candidates, clean_logits=clean_logits)
    raise ValueError(f"{spec.name} is not a minimum-norm attack")
