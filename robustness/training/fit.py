"""A small, seeded minibatch training loop over in-memory tensors.

The method is the `loss(model, x, target)` hook (cross-entropy when None); `target` is indexed
like `x`, so labels and a teacher's soft labels both fit. Data is shuffled with its own
generator so a seed reproduces a run. `on_epoch(epoch, stats)` may return True to stop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from robustness.training import methods


def make_optimizer(params, name: str, lr: float, momentum: float = 0.9,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}")


def fit(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int,
        batch_size: int = 128, lr: float = 1e-3, seed: int = 0, schedule: str = "constant",
        loss: Callable | None = None, optimizer: str = "adam", momentum: float = 0.9,
        weight_decay: float = 0.0, on_epoch: Callable[[int, dict], bool | None] | None = None,
        progress: Callable[[int, int], None] | None = None) -> torch.nn.Module:
    """Train `net` (inputs in [0,1]); returns it in eval mode."""
    loss = loss or methods.standard
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    device = next(net.parameters()).device
    opt = make_optimizer(net.parameters(), optimizer, lr, momentum, weight_decay)
    batches = math.ceil(x.shape[0] / batch_size)
    total_steps = epochs * batches
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: lr_factor(schedule, step + 1, total_steps))
    for epoch in range(epochs):
        net.train()
        started = time.perf_counter()
        order = torch.randperm(x.shape[0], generator=generator)
        total = 0.0
        for b, start in enumerate(range(0, x.shape[0], batch_size)):
            idx = order[start:start + batch_size]
            value = loss(net, x[idx].to(device), y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            value.backward()
            opt.step()
            scheduler.step()
            total += float(value.detach()) * idx.numel()
            if progress:
                progress(epoch * batches + b + 1, total_steps)
        stats = {"loss": total / x.shape[0], "lr": opt.param_groups[0]["lr"],
                 "seconds": time.perf_counter() - started}
        if on_epoch and on_epoch(epoch, stats):
            break
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
