"""Square Attack, L∞ (Andriushchenko, Croce, Flammarion & Hein 2020): a score-based
black-box attack. It never takes a gradient, so a model that masks or shatters its gradients
(a saturated softmax, non-differentiable preprocessing) cannot hide from it; that is why the
AutoAttack cascade ends with it, and why it disagreeing with the gradient attacks is a
validity check.

Random search over the vertices of the ε-ball: start from vertical stripes of ±ε, then, one
query per iteration, redraw one square window of the perturbation to ±ε per channel and keep
the change only if the margin (best other logit minus the true one) grew. The window's area,
a fraction p of the image, halves on a fixed schedule (scaled to the query budget), so the
search goes from coarse to fine. Examples stop querying once misclassified.
Cost: `queries` forward passes per example at most, no backward pass.
"""

from __future__ import annotations

import math

import torch

from robustness.attacks.losses import margin
from robustness.attacks.pgd import keep_best

# The iterations (of a 10,000-query budget) after which the window's area halves.
HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def window_fraction(p_init: float, i: int, queries: int) -> float:
    """The fraction of the image the window covers at iteration i."""
    at = int(i / queries * 10000)
    return p_init / 2 ** sum(at > h for h in HALVINGS)


def _rand(shape, generator, device, dtype=torch.float32) -> torch.Tensor:
    return torch.rand(shape, generator=generator, dtype=dtype, device="cpu").to(device)


def _signs(shape, generator, device) -> torch.Tensor:
    return torch.where(_rand(shape, generator, device) < 0.5, -1.0, 1.0)


@torch.no_grad()
def square_linf(model, x: torch.Tensor, y: torch.Tensor, eps: float, *, queries: int = 5000,
                p_init: float = 0.8, generator: torch.Generator | None = None,
                clean_logits: torch.Tensor | None = None) -> torch.Tensor:
    """Adversarial inputs within ε (L∞) of x and in [0, 1]: per example, the visited point
    with the largest margin."""
    n, c, h, w = x.shape
    if clean_logits is None:
        clean_logits = model(x)
    best_x = x.clone()
    best_m = margin(clean_logits, y).clone()
    if eps <= 0 or queries <= 0:
        return best_x
    stripes = eps * _signs((n, c, 1, w), generator, x.device)
    start = (x + stripes).clamp(0, 1)
    m = margin(model(start), y)
    better = m > best_m
    best_x[better], best_m[better] = start[better], m[better]
    delta = start - x  # the current point of the search, per example
    current = m
    rows_h = torch.arange(h, device=x.device).view(1, h, 1)
    rows_w = torch.arange(w, device=x.device).view(1, 1, w)
    for i in range(1, queries):
        active = torch.nonzero(best_m <= 0).squeeze(1)
        if active.numel() == 0:
            break
        k = active.numel()
        side = min(max(round(math.sqrt(window_fraction(p_init, i, queries) * h * w)), 1),
                   h - 1 if h > 1 else 1, w - 1 if w > 1 else 1)
        top = (_rand((k,), generator, x.device) * (h - side + 1)).long().view(k, 1, 1)
        left = (_rand((k,), generator, x.device) * (w - side + 1)).long().view(k, 1, 1)
        inside = ((rows_h >= top) & (rows_h < top + side) & (rows_w >= left)
                  & (rows_w < left + side)).unsqueeze(1)  # [k, 1, h, w]
        values = eps * _signs((k, c, 1, 1), generator, x.device)
        xs = x[active]
        proposal = (xs + torch.where(inside, values, delta[active])).clamp(0, 1)
        m_new = margin(model(proposal), y[active])
        take = m_new > current[active]
        rows = active[take]
        delta[rows] = proposal[take] - xs[take]
        current[rows] = m_new[take]
        keep_best(best_x, best_m, proposal, m_new, active)
    return best_x
