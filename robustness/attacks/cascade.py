"""A cascade of attacks, AutoAttack's way (Croce & Hein 2020): each attack runs only on the
examples every earlier one left robust, and each example keeps the worst case found for it.

Robust accuracy is then the per-example minimum over the attacks at the cost of running the
strong, slow ones (targeted, black-box) on the few examples that survive the cheap one. Which
stage broke each example is returned too: the report shows the robust accuracy after each
stage, and Square breaking what the gradient stages left is the black_box check's signal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from robustness.attacks.losses import margin
from robustness.attacks.pgd import keep_best

# stage(model, x, y, eps, generator, clean_logits) -> adversarial inputs within eps of x
Stage = Callable[..., torch.Tensor]


def cascade(model, x: torch.Tensor, y: torch.Tensor, eps: float, stages: Sequence[Stage], *,
            generator: torch.Generator | None = None,
            clean_logits: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(adversarial inputs, stage): per example the most confidently wrong point any stage
    found, and the index of the first stage that broke it (-1: none did, or it was wrong
    from the start)."""
    with torch.no_grad():
        if clean_logits is None:
            clean_logits = model(x)
        best_x = x.clone()
        best_m = margin(clean_logits, y).clone()
    stage_of = torch.full((len(x),), -1, dtype=torch.long, device=x.device)
    for i, stage in enumerate(stages):
        rows = torch.nonzero(best_m <= 0).squeeze(1)
        if rows.numel() == 0:
            break
        x_adv = stage(model, x[rows], y[rows], eps, generator, clean_logits[rows])
        with torch.no_grad():
            m = margin(model(x_adv), y[rows])
        stage_of[rows[m > 0]] = i
        keep_best(best_x, best_m, x_adv, m, rows)
    return best_x, stage_of
