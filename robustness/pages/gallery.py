"""The report page's gallery: the most confidently wrong examples, each at the smallest ε that
broke it, with its clean image, its adversarial image and the perturbation amplified to be seen.

The gallery is a page of `GET /v1/audits/{id}/examples?misclassified=true&breaking=true&
clean_correct=true&order=confidence` (robustness.evaluation.examples); the images come from the audit's stored
adversarial set (`x` and `x_adv/<label>/<ε>`, robustness.evaluation.export).
"""

from __future__ import annotations

import base64
import io
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from robustness.evaluation.examples import example_records
from robustness.evaluation.export import tensor_key

GALLERY_SIZE = 24
# The gallery's records: adversarial failures only (right on the clean input, wrong under
# attack), each at its breaking ε, most confident first.
GALLERY_FILTERS = {"misclassified": True, "breaking": True, "clean_correct": True,
                   "order": "confidence"}
DISPLAY_PIXELS = 96  # the longer side of a shown image; small images are scaled up, crisply


class Images(Protocol):
    """Rows of the stored tensors by key (an in-memory dict, or a safetensors file read
    lazily: a 10,000-example set is not loaded for 24 images)."""

    def keys(self) -> set[str]: ...

    def rows(self, key: str, positions: list[int]) -> torch.Tensor: ...


class TensorImages:
    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors

    def keys(self) -> set[str]:
        return set(self.tensors)

    def rows(self, key: str, positions: list[int]) -> torch.Tensor:
        return self.tensors[key][positions]


class SafetensorsImages:
    def __init__(self, path: str):
        from safetensors import safe_open

        self.file = safe_open(path, framework="pt")

    def keys(self) -> set[str]:
        return set(self.file.keys())

    def rows(self, key: str, positions: list[int]) -> torch.Tensor:
        part = self.file.get_slice(key)
        return torch.stack([part[p:p + 1][0] for p in positions]) if positions else \
            torch.empty(0)


def png_uri(image: torch.Tensor) -> str:
    """A C×H×W image in [0, 1] as a PNG data URI (grey for one channel)."""
    array = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    array = array[0] if array.shape[0] == 1 else np.transpose(array[:3], (1, 2, 0))
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def amplified(delta: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The perturbation mapped to [0, 1] with 0 at mid-grey, scaled so its largest component
    reaches black or white; returns the image and the amplification factor."""
    peak = float(delta.abs().max())
    if peak == 0:
        return torch.full_like(delta, 0.5), 1.0
    return 0.5 + delta * (0.5 / peak), 0.5 / peak


def _top(classes: list[int], confidences: list[float], names: list[str] | None,
         truth: int) -> list[dict]:
    return [{"class": c, "name": _name(names, c),
             "confidence": p, "true": c == truth} for c, p in zip(classes, confidences)]


def gallery(report: dict, images: Images | None, *, offset: int = 0,
            size: int = GALLERY_SIZE) -> dict:
    """One page of the gallery: `items` (the /examples records, with their images and top-k
    tables), `total`, `offset`, `size`, and `missing` naming what could not be shown."""
    records, total = example_records(report, offset=offset, limit=size, **GALLERY_FILTERS)
    names = report.get("model", {}).get("labels")
    keys = images.keys() if images is not None else set()
    missing = None
    if images is None:
        missing = "the adversarial examples were not stored with this report"
    elif "x" not in keys:
        missing = "this audit's stored set predates clean images; only adversarials are shown"
    clean_rows = {}
    if "x" in keys and records:
        positions = sorted({r["position"] for r in records})
        clean_rows = dict(zip(positions, images.rows("x", positions)))
    by_key: dict[str, list[dict]] = {}
    for r in records:
        by_key.setdefault(tensor_key(r["attack"], r["epsilon"]), []).append(r)
    adversarial = {}
    for key, group in by_key.items():
        if key in keys:
            positions = [r["position"] for r in group]
            for r, x in zip(group, images.rows(key, positions)):
                adversarial[id(r)] = x
    items = []
    for r in records:
        x_adv, x = adversarial.get(id(r)), clean_rows.get(r["position"])
        item = {**r, "label_name": _name(names, r["label"]), "pred_name": _name(names, r["pred"]),
                "top_clean": _top(r["clean_topk"], r["clean_topk_confidence"], names, r["label"]),
                "top_adversarial": _top(r["topk"], r["topk_confidence"], names, r["label"]),
                "clean_png": png_uri(x) if x is not None else None,
                "adversarial_png": png_uri(x_adv) if x_adv is not None else None,
                "perturbation_png": None, "amplification": None}
        if x is not None and x_adv is not None:
            picture, factor = amplified(x_adv.float() - x.float())
            item["perturbation_png"], item["amplification"] = png_uri(picture), factor
        items.append(item)
    clean_errors = sum(p != y for p, y in zip(report["examples"]["clean"]["pred"],
                                              report["examples"]["label"]))
    return {"items": items, "total": total, "offset": offset, "size": size,
            "missing": missing, "clean_errors": clean_errors}


def _name(names: list[str] | None, c: int) -> str:
    return names[c] if names and 0 <= c < len(names) else str(c)
