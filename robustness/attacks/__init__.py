"""The attacks, one module each; an attack's spec class (`robustness.spec`) runs it with its
own parameters: `spec.run(model, x, y, eps)`.

Bounded attacks (FGSM, PGD, APGD, Square) take ε and return points inside the ε-ball.
Minimum-norm attacks (CW-L2, DeepFool, FAB) ignore ε and return the smallest adversarial they found plus a `found` mask;
the evaluation decides per ε whether that counts.
"""

from robustness.attacks.apgd import apgd
from robustness.attacks.cascade import cascade
from robustness.attacks.cw import carlini_wagner_l2
from robustness.attacks.deepfool import deepfool
from robustness.attacks.eot import expectation
from robustness.attacks.fab import fab
from robustness.attacks.fgsm import fgsm
from robustness.attacks.pgd import pgd
from robustness.attacks.square import square
from robustness.attacks.threat import L2Ball, LinfBall, ThreatModel, threat_model

__all__ = [
    "L2Ball",
    "LinfBall",
    "ThreatModel",
    "apgd",
    "carlini_wagner_l2",
    "cascade",
    "deepfool",
    "expectation",
    "fab",
    "fgsm",
    "pgd",
    "square",
    "threat_model",
]
