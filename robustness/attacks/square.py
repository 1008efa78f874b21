"""Square Attack (Andriushchenko, Croce, Flammarion & Hein 2020), L∞ and L2: a score-based
black-box attack. It never takes a gradient, so a model that masks or shatters its gradients
(a saturated softmax, non-differentiable preprocessing) cannot hide from it; that is why the
AutoAttack cascade ends with it, and why it disagreeing with the gradient attacks is a
validity check.

One random-search loop for both norms: one query per iteration, change the perturbation in a
square window and keep the change only if the margin (best other logit minus the true one)
grew. The window's area, a fraction p of the image, halves on a fixed schedule (scaled to the
query budget), so the search goes from coarse to fine. Examples stop querying once
misclassified. What a norm supplies is the start and the change:
- L∞ searches the vertices of the ε-ball: it starts from vertical stripes of ±ε and redraws
  one window to ±ε per channel.
- L2 keeps the perturbation on the sphere of radius ε: it starts from a grid of "meta-squares"
  (concentric rings of decaying magnitude, opposite signs in the two halves, random sign per
  channel) and moves the energy of two windows (plus any slack to ε) into the first as a new
  meta-square added to its old content, zeroing the second.
Cost: `queries` forward passes per example at most, no backward pass.
"""

from __future__ import annotations

import math

import torch

from robustness.attacks.losses import margin
from robustness.attacks.pgd import keep_best
from robustness.attacks.threat import ThreatModel, _per_example, flat_norm

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


def meta_square(s: int, device) -> torch.Tensor:
    """An s×s pattern: two halves of concentric rectangles whose magnitude decays as
    1/(ring+1)² from each half's centre, the right half negated; unit L2 norm."""
    def half(width: int) -> torch.Tensor:
        i = torch.arange(s, device=device).view(s, 1) - (s - 1) / 2
        j = torch.arange(width, device=device).view(1, width) - (width - 1) / 2
        ring = torch.maximum(i.abs(), j.abs()).floor()
        return 1.0 / (ring + 1) ** 2
    left = s - s // 2
    pattern = torch.cat([half(left), -half(s // 2)], dim=1) if s > 1 else torch.ones(1, 1)
    return pattern / pattern.norm()


def _window(top, left, side, h, w, device) -> torch.Tensor:
    """[k, 1, h, w] masks of one square window per example."""
    rows_h = torch.arange(h, device=device).view(1, h, 1)
    rows_w = torch.arange(w, device=device).view(1, 1, w)
    top, left = top.view(-1, 1, 1), left.view(-1, 1, 1)
    return ((rows_h >= top) & (rows_h < top + side) & (rows_w >= left)
            & (rows_w < left + side)).unsqueeze(1)


def _corner(k, extent, side, generator, device) -> torch.Tensor:
    return (_rand((k,), generator, device) * (extent - side + 1)).long()


def _start_linf(x, eps, generator):
    n, c, _, w = x.shape
    return eps * _signs((n, c, 1, w), generator, x.device)


def _start_l2(x, eps, generator):
    """A grid of meta-squares with random signs per channel, scaled to norm ε."""
    n, c, h, w = x.shape
    tile = max(min(h, w) // 5, 3)
    pattern = meta_square(tile, x.device)
    delta = torch.zeros_like(x)
    for top in range(0, h - tile + 1, tile):
        for left in range(0, w - tile + 1, tile):
            sign = _signs((n, c, 1, 1), generator, x.device)
            delta[:, :, top:top + tile, left:left + tile] = sign * pattern
    return delta * _per_example(eps / flat_norm(delta, 2).clamp_min(1e-12))


def _change_linf(x, delta, eps, p, generator):
    k, c, h, w = x.shape
    side = min(max(round(math.sqrt(p * h * w)), 1), max(h - 1, 1), max(w - 1, 1))
    inside = _window(_corner(k, h, side, generator, x.device),
                     _corner(k, w, side, generator, x.device), side, h, w, x.device)
    return torch.where(inside, eps * _signs((k, c, 1, 1), generator, x.device), delta)


def _change_l2(x, delta, eps, p, generator):
    k, c, h, w = x.shape
    side = max(round(math.sqrt(p * h * w)), 3)
    side = min(side + (side % 2 == 0), h, w)
    top, left = _corner(k, h, side, generator, x.device), _corner(k, w, side, generator, x.device)
    first = _window(top, left, side, h, w, x.device)
    second = _window(_corner(k, h, side, generator, x.device),
                     _corner(k, w, side, generator, x.device), side, h, w, x.device)
    both = first | second
    slack = (eps ** 2 - flat_norm(delta, 2) ** 2).clamp_min(0)
    energy = flat_norm(delta * both, 2) ** 2 + slack
    # The new meta-square at the first window's place, random sign per channel.
    pattern = meta_square(side, x.device)
    if _rand((1,), generator, x.device).item() < 0.5:
        pattern = pattern.T
    i = (torch.arange(h, device=x.device).view(1, h, 1) - top.view(-1, 1, 1)).clamp(0, side - 1)
    j = (torch.arange(w, device=x.device).view(1, 1, w) - left.view(-1, 1, 1)).clamp(0, side - 1)
    placed = (pattern[i, j].unsqueeze(1) * first) * _signs((k, c, 1, 1), generator, x.device)
    old = delta * first
    new = placed + old / _per_example(flat_norm(old, 2).clamp_min(1e-12))
    new = new * _per_example(energy.sqrt() / flat_norm(new, 2).clamp_min(1e-12))
    return torch.where(both, new, delta)


NORMS = {"linf": (_start_linf, _change_linf), "l2": (_start_l2, _change_l2)}


@torch.no_grad()
def square(model, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *,
           queries: int = 5000, p_init: float = 0.8, generator: torch.Generator | None = None,
           clean_logits: torch.Tensor | None = None) -> torch.Tensor:
    """Adversarial inputs within `threat` of x and in [0, 1]: per example, the visited point
    with the largest margin."""
    start, change = NORMS[threat.norm]
    eps = threat.eps
    if clean_logits is None:
        clean_logits = model(x)
    best_x = x.clone()
    best_m = margin(clean_logits, y).clone()
    if eps <= 0 or queries <= 0:
        return best_x
    first = x + threat.clip(x, start(x, eps, generator))
    current = margin(model(first), y)
    keep_best(best_x, best_m, first, current, torch.arange(len(x), device=x.device))
    delta = first - x  # the current point of the search, per example
    for i in range(1, queries):
        active = torch.nonzero(best_m <= 0).squeeze(1)
        if active.numel() == 0:
            break
        xs = x[active]
        proposal = xs + threat.clip(xs, change(xs, delta[active], eps,
                                               window_fraction(p_init, i, queries), generator))
        m_new = margin(model(proposal), y[active])
        take = m_new > current[active]
        rows = active[take]
        delta[rows] = proposal[take] - xs[take]
        current[rows] = m_new[take]
        keep_best(best_x, best_m, proposal, m_new, active)
    return best_x
