"""DeepFool (Moosavi-Dezfooli et al. 2016): walk to the nearest linearized decision boundary.

Batched over examples; besides the iterations, the only Python loop is over candidate classes
(one backward pass each), keeping a running nearest boundary so memory stays one gradient.
Examples leave the active set as soon as they are fooled.
"""

from __future__ import annotations

import torch

from robustness.attacks.threat import flat_norm


def _without_true(order: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Drop the true class from each row of a class ranking, keeping the order of the rest."""
    keep = order != y[:, None]
    return order[keep].view(order.shape[0], order.shape[1] - 1)


def deepfool(model, x: torch.Tensor, y: torch.Tensor, *, steps: int = 50,
             overshoot: float = 0.02, candidates: int = 10, clean_logits=None, **_):
    """Return (x_adv, found): x_adv is x where nothing was found."""
    if clean_logits is None:
        with torch.no_grad():
            clean_logits = model(x)
    k = min(candidates, clean_logits.shape[1])
    others = _without_true(clean_logits.argsort(dim=1, descending=True), y)[:, : k - 1]
    r_tot = torch.zeros_like(x)
    active = clean_logits.argmax(1) == y
    for _ in range(steps):
        rows = torch.nonzero(active).squeeze(1)
        if rows.numel() == 0:
            break
        xa = (x[rows] + (1 + overshoot) * r_tot[rows]).clamp(0, 1).requires_grad_(True)
        logits = model(xa)
        still = logits.argmax(1) == y[rows]
        active[rows[~still]] = False
        true = logits.gather(1, y[rows, None]).squeeze(1)
        best_dist = torch.full_like(true, float("inf"))
        best_step = torch.zeros_like(xa)
        for j in range(others.shape[1]):
            f = logits.gather(1, others[rows, j, None]).squeeze(1) - true
            (g,) = torch.autograd.grad(f.sum(), xa, retain_graph=j + 1 < others.shape[1])
            gn = flat_norm(g, 2).clamp_min(1e-12)
            f = f.detach().abs()
            dist = f / gn
            closer = dist < best_dist
            best_dist = torch.where(closer, dist, best_dist)
            step = ((f + 1e-4) / gn.pow(2)).view(-1, 1, 1, 1) * g
            best_step = torch.where(closer.view(-1, 1, 1, 1), step, best_step)
        r_tot[rows[still]] += best_step[still]
    x_adv = (x + (1 + overshoot) * r_tot).clamp(0, 1)
    with torch.no_grad():
        found = model(x_adv).argmax(1) != y
    return torch.where(found.view(-1, 1, 1, 1), x_adv, x), found
