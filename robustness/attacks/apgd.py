"""Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks"): PGD without a step size to tune.

Each example starts with step 2ε and keeps its own step; a heavy-ball momentum (α = 0.75)
smooths the ascent, and at checkpoints (after 22% of the budget, then intervals shrinking by
3% of it down to 6%) an example halves its step and restarts from its best point when its
loss rose in fewer than ρ of the steps since the last checkpoint, or when neither its step
nor its best loss changed since then. The losses: cross-entropy, and the Difference of Logits
Ratio (DLR), which is invariant to shifting and scaling the logits, so a model that masks
gradients by scaling them (defensive distillation) cannot hide behind a saturated softmax.
Targeted variants aim at one other class at a time (the model's own runners-up).

As in `pgd`, the point returned per example is the visited one with the largest margin, so a
success anywhere on the path counts, and restarts re-attack only the rows still robust.
Cost: `steps` forward+backward passes per restart and target, plus one forward per run.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from robustness.attacks.losses import margin, runner_ups
from robustness.attacks.pgd import keep_best
from robustness.attacks.threat import ThreatModel, _per_example

MOMENTUM = 0.75


def dlr(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """-(z_y - max_{i≠y} z_i) / (z_π1 - z_π3): the margin, per the logits' own spread."""
    top = logits.sort(dim=1, descending=True).values
    return margin(logits, y) / (top[:, 0] - top[:, 2] + 1e-12)


def dlr_targeted(logits: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """-(z_y - z_t) / (z_π1 - (z_π3 + z_π4)/2): towards class t, scale-invariant."""
    top = logits.sort(dim=1, descending=True).values
    gap = logits.gather(1, t[:, None]).squeeze(1) - logits.gather(1, y[:, None]).squeeze(1)
    return gap / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


def objective(loss: str, logits: torch.Tensor, y: torch.Tensor,
              target: torch.Tensor | None) -> torch.Tensor:
    """Per-example loss to maximise."""
    if target is None:
        if loss == "ce":
            return F.cross_entropy(logits, y, reduction="none")
        return dlr(logits, y) if logits.shape[1] >= 3 else margin(logits, y)
    if loss == "ce":
        return -F.cross_entropy(logits, target, reduction="none")
    if logits.shape[1] >= 4:
        return dlr_targeted(logits, y, target)
    return logits.gather(1, target[:, None]).squeeze(1) - logits.gather(1, y[:, None]).squeeze(1)


def checkpoints(steps: int) -> list[int]:
    """Iterations after which steps are judged: 22% of the budget, then shorter intervals."""
    first, shrink, least = max(int(0.22 * steps), 1), max(int(0.03 * steps), 1), \
        max(int(0.06 * steps), 1)
    out, at, interval = [], 0, first
    while at + interval < steps:
        at += interval
        out.append(at)
        interval = max(interval - shrink, least)
    return out


def _run(model, x, y, threat: ThreatModel, start: torch.Tensor, *, steps: int, loss: str,
         rho: float, target: torch.Tensor | None, observe) -> None:
    """One APGD run from x + start; `observe(x_adv, logits)` sees every iterate."""
    n = x.shape[0]
    eta = torch.full((n,), 2 * threat.eps, dtype=x.dtype, device=x.device)
    x_cur = x + threat.clip(x, start)
    x_prev = x_cur.clone()
    best_loss = torch.full((n,), float("-inf"), dtype=x.dtype, device=x.device)
    x_best, grad_best = x_cur.clone(), torch.zeros_like(x)
    last_loss = best_loss.clone()
    rises = torch.zeros(n, dtype=torch.long, device=x.device)
    reduced_last = torch.ones(n, dtype=torch.bool, device=x.device)
    best_at_check = best_loss.clone()
    judged = checkpoints(steps)
    since = 0
    for k in range(steps):
        x_cur = x_cur.detach().requires_grad_(True)
        logits = model(x_cur)
        value = objective(loss, logits, y, target)
        (grad,) = torch.autograd.grad(value.sum(), x_cur)
        with torch.no_grad():
            x_cur, value, logits = x_cur.detach(), value.detach(), logits.detach()
            observe(x_cur, logits)
            if k > 0:
                rises += value > last_loss
            last_loss = value
            better = value > best_loss
            best_loss = torch.where(better, value, best_loss)
            x_best[better], grad_best[better] = x_cur[better], grad[better]
            since += 1
            if judged and k + 1 == judged[0]:
                judged.pop(0)
                stalled = rises <= rho * since
                flat = ~reduced_last & (best_at_check >= best_loss)
                halve = stalled | flat
                eta = torch.where(halve, eta / 2, eta)
                x_cur[halve], grad[halve] = x_best[halve], grad_best[halve]
                x_prev[halve] = x_best[halve]
                reduced_last, best_at_check = halve, best_loss.clone()
                rises.zero_()
                since = 0
            step = threat.step(grad, _per_example(eta))
            z = x + threat.clip(x, x_cur + step - x)
            a = MOMENTUM if k > 0 else 1.0
            moved = x_cur + a * (z - x_cur) + (1 - a) * (x_cur - x_prev)
            x_prev, x_cur = x_cur, x + threat.clip(x, moved - x)
    with torch.no_grad():
        observe(x_cur, model(x_cur))


def apgd(model, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, steps: int = 100,
         loss: str = "ce", restarts: int = 1, targets: int = 0, rho: float = 0.75,
         generator: torch.Generator | None = None,
         clean_logits: torch.Tensor | None = None) -> torch.Tensor:
    """Adversarial inputs within `threat` of x (and in [0, 1]). With `targets` = k > 0, the
    targeted attack against each of the k classes the model ranks highest after the true one,
    in turn, on the rows still robust."""
    if clean_logits is None:
        with torch.no_grad():
            clean_logits = model(x)
    best_x = x.clone()
    best_m = margin(clean_logits, y).detach().clone()
    aims = runner_ups(clean_logits, y, targets) if targets else [None]
    for aim in aims:
        for _ in range(restarts):
            rows = torch.nonzero(best_m <= 0).squeeze(1)
            if rows.numel() == 0:
                return best_x
            xs, ys = x[rows], y[rows]

            def observe(x_adv, logits, ys=ys, rows=rows):
                keep_best(best_x, best_m, x_adv, margin(logits, ys), rows)

            _run(model, xs, ys, threat, threat.random_init(xs, generator), steps=steps,
                 loss=loss, rho=rho, target=None if aim is None else aim[rows],
                 observe=observe)
    return best_x
