"""Where tensors live: CUDA when present, else CPU, overridable for tests and workers."""

import torch


def pick_device(requested: str | None = None) -> torch.device:
    if requested and requested != "auto":
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def fast_layout(device: torch.device) -> torch.memory_format:
    """Channels-last on CUDA, where cuDNN's convolutions (and Tensor Cores under AMP) run
    fastest on it; the default layout elsewhere."""
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


def in_layout(x: torch.Tensor, layout: torch.memory_format) -> torch.Tensor:
    """x in `layout` where that layout applies (4-D image batches)."""
    return x.contiguous(memory_format=layout) if x.dim() == 4 else x


class Autocast(torch.nn.Module):
    """The model under automatic mixed precision, logits back in float32: for the attacks'
    passes only. The reported figures are never taken from it: every record is the float32
    model's prediction on the point the attack found. bfloat16 wherever the device has it
    (float32's exponent range: a confidently right example's cross-entropy gradient, about
    1e-9, would flush to zero in float16 and stall the attack); float16 on older GPUs."""

    def __init__(self, model: torch.nn.Module, device_type: str):
        super().__init__()
        self.model, self.device_type = model, device_type
        bf16 = device_type != "cuda" or torch.cuda.is_bf16_supported()
        self.dtype = torch.bfloat16 if bf16 else torch.float16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=self.dtype):
            return self.model(x).float()
