"""Carlini-Wagner L2: minimize ||δ||² + c·max(z_y − max_{j≠y} z_j + κ, 0) in tanh space.

A minimum-norm attack: it returns, per example, the smallest adversarial it found and whether
it found one at all; the evaluation then counts an example as broken at ε when that norm is
≤ ε. c is tuned per example by binary search (×10 until the first success, then bisection).
Its margin objective does not saturate with the softmax, which is why it breaks defensive
distillation where cross-entropy attacks report false robustness.
"""

from __future__ import annotations

import torch

from robustness.attacks.losses import margin


def carlini_wagner_l2(model, x: torch.Tensor, y: torch.Tensor, *, steps: int = 100,
                      binary_search_steps: int = 5, initial_const: float = 1.0,
                      confidence: float = 0.0, lr: float = 0.05, **_):
    """Return (x_adv, found): x_adv is x where nothing was found."""
    n = x.shape[0]
    w0 = torch.atanh((2 * x - 1).clamp(-1 + 1e-6, 1 - 1e-6))
    const = torch.full((n,), float(initial_const), device=x.device)
    lower = torch.zeros(n, device=x.device)
    upper = torch.full((n,), float("inf"), device=x.device)
    best_l2 = torch.full((n,), float("inf"), device=x.device)
    best_x = x.clone()
    for _ in range(binary_search_steps):
        w = w0.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([w], lr=lr)
        succeeded = torch.zeros(n, dtype=torch.bool, device=x.device)
        for _ in range(steps):
            adv = (torch.tanh(w) + 1) / 2
            logits = model(adv)
            l2sq = (adv - x).flatten(1).pow(2).sum(1)
            m = margin(logits, y)
            loss = l2sq + const * (confidence - m).clamp_min(0)
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            with torch.no_grad():
                # The point scored is the one the logits were computed on (before the step).
                ok = (m > 0) & (m >= confidence)
                l2 = l2sq.sqrt()
                better = ok & (l2 < best_l2)
                best_l2 = torch.where(better, l2, best_l2)
                best_x[better] = adv.detach()[better]
                succeeded |= ok
            optimizer.step()
        with torch.no_grad():
            upper = torch.where(succeeded, torch.minimum(upper, const), upper)
            lower = torch.where(succeeded, lower, torch.maximum(lower, const))
            const = torch.where(torch.isfinite(upper), (lower + upper) / 2, const * 10)
    return best_x, torch.isfinite(best_l2)
