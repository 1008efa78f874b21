"""The model every attack sees: inputs in [0, 1] pixel space, logits out.

Normalization sits *inside* the module, so attacks perturb and clip raw pixels and ε is in
pixel units whatever mean/std the model was trained with (DESIGN: "ε is in pixel units").
"""

from __future__ import annotations

import torch
from torch import nn

from robustness.models.metadata import ModelMetadata


class Classifier(nn.Module):
    """``forward(x) = net((x - mean) / std)`` for ``x`` of shape [N, C, H, W] in [0, 1].

    ``metadata`` needs ``input_shape``; ``load_model`` also fills in ``num_classes`` (from a
    forward pass when not declared). ``format`` names the checkpoint format it came from and
    ``sha256`` the checkpoint file's digest (None when built in memory).
    """

    def __init__(self, net: nn.Module, metadata: ModelMetadata, format: str = "module",
                 sha256: str | None = None, fixed_mode: bool = False):
        super().__init__()
        if metadata.input_shape is None:
            raise ValueError("Classifier needs metadata with input_shape")
        self.net = net
        self.metadata = metadata
        self.format = format
        self.sha256 = sha256
        # Exported programs bake train/eval behaviour in at export time and raise on .train().
        self.fixed_mode = fixed_mode
        channels = metadata.input_shape[0]
        pre = metadata.preprocessing
        mean = torch.tensor(pre.mean if pre else [0.0], dtype=torch.float32)
        std = torch.tensor(pre.std if pre else [1.0], dtype=torch.float32)
        self.register_buffer("mean", mean.expand(channels).reshape(1, channels, 1, 1).clone())
        self.register_buffer("std", std.expand(channels).reshape(1, channels, 1, 1).clone())
        # Half-precision checkpoints still take float32 pixels and return float32 logits.
        dtypes = [p.dtype for p in net.parameters() if p.is_floating_point()]
        self.net_dtype = dtypes[0] if dtypes else torch.float32

    @property
    def num_classes(self) -> int:
        return self.metadata.num_classes

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.metadata.input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = ((x - self.mean) / self.std).to(self.net_dtype)
        return self.net(z).float()

    def train(self, mode: bool = True) -> Classifier:
        self.training = mode
        if not self.fixed_mode:
            self.net.train(mode)
        return self
