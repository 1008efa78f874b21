"""FGSM (L∞) and FGM (L2): a single full-size gradient step, i.e. PGD with one step of size ε
from x. Kept as its own name because users and papers ask for it by that name."""

from robustness.attacks.pgd import pgd
from robustness.attacks.threat import ThreatModel


def fgsm(model, x, y, threat: ThreatModel, *, loss: str = "ce", clean_logits=None, **_):
    return pgd(model, x, y, threat, steps=1, step_size=threat.eps, random_start=False,
               loss=loss, clean_logits=clean_logits)
