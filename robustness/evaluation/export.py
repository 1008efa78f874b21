"""Adversarial examples as a tensor file a user can re-check against the report.

Keys: `index` and `label` (aligned with the report's examples), `x` (the clean inputs: the
report page shows each adversarial beside its clean image and the perturbation), and one
`x_adv/<label>/<ε>` tensor per (attack, ε). The format follows the file extension: .safetensors or .npz.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from robustness.errors import SpecError


def tensor_key(label: str, epsilon: float) -> str:
    """The key of one (attack, ε): ε written exactly (repr), so any float round-trips."""
    return f"x_adv/{label}/{float(epsilon)!r}"


def adversarial_tensors(result, report: dict) -> dict[str, torch.Tensor]:
    tensors = {"index": torch.tensor(report["examples"]["index"]),
               "label": torch.tensor(report["examples"]["label"])}
    if result.clean is not None:
        tensors["x"] = result.clean.contiguous()
    for (label, eps), x in result.adversarial.items():
        tensors[tensor_key(label, eps)] = x.contiguous()
    return tensors


def save_adversarial(result, report: dict, path: str | Path) -> Path:
    path = Path(path)
    tensors = adversarial_tensors(result, report)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file
        save_file(tensors, str(path))
    elif path.suffix == ".npz":
        np.savez_compressed(path, **{k: v.numpy() for k, v in tensors.items()})
    else:
        raise SpecError(f"--adversarial-out: {path.name} must end in .safetensors or .npz")
    return path
