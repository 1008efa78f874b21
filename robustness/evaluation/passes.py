"""What an audit actually spent, in the benchmarks' unit: forward+backward passes per example.

The nominal cost (steps × ε grid) overstates an audit that stops early (the breaking-ε search,
a cascade's later stages on the few robust examples), and the validity checks' budget is a
tenth of what the audit spent. So the model is wrapped and every row it sees is counted: a
forward that builds a graph for an input gradient as one pass (its backward follows), any
other forward as a third of one (a backward costs about two forwards).
"""

from __future__ import annotations

import torch
from torch import nn


class PassCounter(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        # Rows seen by forwards that build an input gradient, and by all others (integers,
        # so shards add up to exactly the unsharded count).
        self.rows = [0, 0]

    @property
    def passes(self) -> float:
        return passes(self.rows)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows[0 if torch.is_grad_enabled() and x.requires_grad else 1] += x.shape[0]
        return self.model(x)


def passes(rows) -> float:
    """Forward+backward passes of (graph rows, other rows)."""
    return rows[0] + rows[1] / 3
