"""A small, seeded minibatch training loop over in-memory tensors.

`perturb(net, x, y) -> x'` is the hook adversarial training plugs into; standard training
leaves it None. Data is shuffled with its own generator so a seed reproduces a run.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F


def fit(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int,
        batch_size: int = 128, lr: float = 1e-3, seed: int = 0,
        schedule: str = "constant", perturb: Callable | None = None,
        on_epoch: Callable[[int, float], None] | None = None) -> torch.nn.Module:
    """Train `net` (inputs in [0,1]) with Adam and cross-entropy; returns it in eval mode."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    device = next(net.parameters()).device
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    total_steps = epochs * math.ceil(x.shape[0] / batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(schedule, step, total_steps))
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(x.shape[0], generator=generator)
        total = 0.0
        for start in range(0, x.shape[0], batch_size):
            idx = order[start:start + batch_size]
            xb, yb = x[idx].to(device), y[idx].to(device)
            if perturb is not None:
                xb = perturb(net, xb, yb)
            loss = F.cross_entropy(net(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * idx.numel()
        if on_epoch:
            on_epoch(epoch, total / x.shape[0])
    return net.eval()


def lr_factor(schedule: str, step: int, total: int) -> float:
    """Multiplier of the base learning rate at `step` of `total`.

    cosine anneals to zero, which buys short runs most of the accuracy of long ones; cyclic is
    the one-cycle triangle (up for the first 40%, then down to zero) that fast FGSM training
    depends on (Wong, Rice & Kolter 2020).
    """
    t = step / max(total, 1)
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    if schedule == "cyclic":
        return t / 0.4 if t < 0.4 else max(0.0, (1 - t) / 0.6)
    raise ValueError(f"unknown learning-rate schedule {schedule!r}")
