"""Report sub-resources: per-example records filtered and paginated, and the adversarial
examples of one (attack, ε) as a tensor file a user can re-check against the report."""

from __future__ import annotations

import io

import numpy as np
import torch

from robustness.errors import SpecError
from robustness.evaluation.examples import example_records, select_columns
from robustness.evaluation.export import tensor_key
from service.problems import Problem
from service.routes.listing import Paging


def example_page(report: dict, paging: Paging, **filters) -> dict:
    """`GET /v1/audits/{id}/examples`: one page of records after the filters."""
    try:
        items, total = example_records(report, offset=paging.offset, limit=paging.limit,
                                       **filters)
    except SpecError as exc:
        raise Problem(422, str(exc)) from None
    for item in items:
        del item["position"]
    return paging.answer(items, total)


def adversarial_file(tensors: dict[str, torch.Tensor], report: dict, attack: str,
                     epsilon: float, fmt: str) -> tuple[bytes, str]:
    """One (attack, ε) of the stored adversarial set, with what a re-check needs: the clean
    inputs are not included (the user has the data set); labels, the report's predictions and
    confidences are, aligned with `index`."""
    try:
        (col,) = select_columns(report, attack, epsilon)
    except SpecError as exc:
        raise Problem(422, str(exc)) from None
    key = tensor_key(col["label"], col["epsilon"])
    if key not in tensors:
        raise Problem(404, f"the adversarial examples of {attack} at ε={epsilon:g} were not "
                           f"stored for this audit")
    out = {"x_adv": tensors[key].contiguous(), "index": tensors["index"],
           "label": tensors["label"],
           "pred": torch.tensor(col["pred"]), "confidence": torch.tensor(col["confidence"]),
           "epsilon": torch.tensor([col["epsilon"]], dtype=torch.float64)}
    if fmt == "safetensors":
        from safetensors.torch import save

        meta = {"attack": attack, "norm": str(col.get("norm")), "epsilon": repr(col["epsilon"])}
        return save(out, metadata=meta), "application/octet-stream"
    if fmt == "npz":
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **{k: v.numpy() for k, v in out.items()})
        return buffer.getvalue(), "application/octet-stream"
    raise Problem(422, f"format: {fmt!r} is not one of safetensors, npz")
