"""Per-example attack objectives on logits.

`margin` (the CW loss: best other logit minus the true logit) is positive exactly when the
example is misclassified, so it doubles as the score for keeping the best iterate. Unlike
cross-entropy it does not vanish when the softmax saturates, which is what breaks
defensive distillation.
"""

import torch
import torch.nn.functional as F


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    return other - true


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="none")


LOSSES = {"ce": cross_entropy, "margin": margin}
# Towards class t: cross-entropy to t falling, or t's logit rising above every other.
TARGETED = {"ce": lambda logits, t: -cross_entropy(logits, t),
            "margin": lambda logits, t: -margin(logits, t)}


def runner_ups(clean_logits: torch.Tensor, y: torch.Tensor, k: int) -> list[torch.Tensor]:
    """The targets of a targeted attack: per example, the k classes the model ranks highest
    after the true one, as k label vectors (best first)."""
    ranked = clean_logits.scatter(1, y[:, None], float("-inf")).argsort(dim=1, descending=True)
    return [ranked[:, i] for i in range(min(k, clean_logits.shape[1] - 1))]
