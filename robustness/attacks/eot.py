"""Expectation over transformation (Athalye, Carlini & Wagner 2018): a model that is random
at inference (dropout left on, noise layers, random input transforms) gives one draw's
gradient per forward pass, which points nowhere in particular. Attacking the average of n
draws follows the expected model instead.

`expectation(model, n)` is that average as a model: one batched forward of n copies of the
input, logits averaged, so its input gradient is the mean of the n draws' gradients and
every gradient attack gains EOT without a line of its own. Cost: n passes per pass.
"""

from __future__ import annotations

import torch
from torch import nn


class Expectation(nn.Module):
    def __init__(self, model: nn.Module, draws: int):
        super().__init__()
        self.model, self.draws = model, draws

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x.repeat(self.draws, *([1] * (x.dim() - 1))))
        return logits.view(self.draws, x.shape[0], -1).mean(0)


def expectation(model: nn.Module, draws: int) -> nn.Module:
    return model if draws <= 1 else Expectation(model, draws)
