"""An audit's batch size when its spec leaves it unset: as large as the memory free where it
runs allows, up to a cap per device (issue 17).

On a CPU a batch beyond a few hundred examples buys no speed, so the cap is 256, the batch
every audit had before; a small model therefore audits exactly as it did. On a GPU the cap
is 4096: a small model then fills the device instead of leaving it idle between kernels.
A model too large for the cap gets the largest power of two that fits, instead of running
out of memory.

What a batch needs is measured, not guessed: one forward pass of a few examples with an
input gradient, counting the bytes autograd keeps for the backward pass (weights excluded:
they do not grow with the batch). An attack holds that, the gradients flowing back through
it, and its own few copies of the batch, hence FACTOR; it may take HEADROOM of what is free.

The batch is also the audit's seeding unit (each batch draws its random starts from its own
generator), so the chosen size is written back into the spec the report echoes: the same
spec with that `batch_size` reproduces the audit on any machine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

CAPS = {"cpu": 256, "cuda": 4096}
FACTOR = 3.0
HEADROOM = 0.5
PROBE = 4


@dataclass(frozen=True)
class BatchChoice:
    value: int
    chosen: str                    # "spec" (set by the user) or "free memory"
    per_example_bytes: int | None = None
    free_bytes: int | None = None
    cap: int | None = None

    def provenance(self) -> dict:
        return asdict(self)


def free_bytes(device: torch.device) -> int | None:
    """Memory free for a job on `device`: the GPU's free memory, or the host's available
    memory (Linux's MemAvailable); None where neither can be read."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def per_example_bytes(model, shape: tuple[int, ...], device: torch.device) -> int:
    """Bytes one example adds to a forward+backward pass w.r.t. the input: what autograd
    saves for the backward (each storage once, parameters and buffers not at all), the
    logits, and the input with its gradient."""
    fixed = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
    seen: set[tuple[int, int]] = set()
    saved = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        ptr = t.untyped_storage().data_ptr()
        key = (ptr, t.untyped_storage().nbytes())
        if ptr not in fixed and key not in seen:
            seen.add(key)
            saved += key[1]
        return t

    # The probe must leave no trace: a model left in train mode would update its batch-norm
    # statistics, and one with dropout would draw from the global generator.
    buffers = [b.detach().clone() for b in model.buffers()]
    gpus = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    # Gradients on, whatever the caller's context: the probe measures an attack's pass.
    with torch.random.fork_rng(devices=gpus), torch.enable_grad():
        x = torch.rand((PROBE, *shape), device=device, requires_grad=True)
        fixed.add(x.untyped_storage().data_ptr())  # counted below, with its gradient
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            logits = model(x)
    with torch.no_grad():
        for b, kept in zip(model.buffers(), buffers, strict=True):
            b.copy_(kept)
    total = saved + logits.numel() * logits.element_size() + 2 * x.numel() * x.element_size()
    return -(-total // PROBE)


def fitting_batch(model, shape: tuple[int, ...], device: torch.device,
                  free: int | None = None, limit: int | None = None) -> BatchChoice:
    """The largest power of two up to the device's cap (and `limit`: a service's largest
    batch) whose attack fits in HEADROOM of `free` bytes (measured when not given); at
    least 1."""
    cap = CAPS.get(device.type, CAPS["cpu"])
    if limit is not None:
        cap = min(cap, 1 << (limit.bit_length() - 1))  # a power of two, as every choice is
    each = per_example_bytes(model, shape, device)
    free = free_bytes(device) if free is None else free
    batch = cap
    if free is not None:
        while batch > 1 and batch * each * FACTOR > free * HEADROOM:
            batch //= 2
    return BatchChoice(value=batch, chosen="free memory", per_example_bytes=each,
                       free_bytes=free, cap=cap)


def resolve_batch(spec, model, x: torch.Tensor, device: torch.device,
                  limit: int | None = None):
    """(spec with its batch_size set, BatchChoice): the spec's own, or the fitting one."""
    if spec.batch_size is not None:
        return spec, BatchChoice(value=spec.batch_size, chosen="spec")
    choice = fitting_batch(model, tuple(x.shape[1:]), device, limit=limit)
    return spec.model_copy(update={"batch_size": choice.value}), choice
