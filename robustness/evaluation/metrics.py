"""Per-example records and the aggregate figures of a report, computed from logits.

Confidences are softmax probabilities of the model as deployed (T=1). "Silent" errors are
misclassifications made with confidence ≥ τ: the failures a confidence-based monitor would
not catch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Records:
    """Columnar per-example records of one (attack, ε) or of the clean inputs."""

    pred: torch.Tensor
    confidence: torch.Tensor
    true_class_prob: torch.Tensor
    topk: torch.Tensor
    topk_confidence: torch.Tensor
    in_top5: torch.Tensor
    linf: torch.Tensor
    l2: torch.Tensor

    @classmethod
    def from_logits(cls, logits, y, x_adv, x, k: int) -> Records:
        probs = torch.softmax(logits.detach().float(), dim=1)
        confidence, pred = probs.max(1)
        top = probs.topk(min(k, probs.shape[1]), dim=1)
        top5 = probs.topk(min(5, probs.shape[1]), dim=1).indices
        delta = (x_adv - x).flatten(1).float()
        return cls(pred=pred, confidence=confidence,
                   true_class_prob=probs.gather(1, y[:, None]).squeeze(1),
                   topk=top.indices, topk_confidence=top.values,
                   in_top5=(top5 == y[:, None]).any(1),
                   linf=delta.abs().amax(1), l2=delta.norm(dim=1))

    def to(self, device) -> Records:
        return Records(**{k: v.to(device) for k, v in self.__dict__.items()})

    @classmethod
    def cat(cls, parts: list[Records]) -> Records:
        return cls(**{k: torch.cat([getattr(p, k) for p in parts]) for k in cls.__annotations__})

    def select(self, mask: torch.Tensor, other: Records) -> Records:
        """Per example: this record where mask holds, else `other`'s."""
        def pick(a, b):
            m = mask.view(-1, *([1] * (a.dim() - 1)))
            return torch.where(m, a, b)
        return Records(**{k: pick(getattr(self, k), getattr(other, k)) for k in self.__dict__})


def _mean(values: torch.Tensor) -> float | None:
    return float(values.double().mean()) if values.numel() else None


def aggregate(rec: Records, y: torch.Tensor, clean_correct: torch.Tensor,
              taus: list[float]) -> dict:
    wrong = rec.pred != y
    return {
        "accuracy": _mean(~wrong),
        "top5_accuracy": _mean(rec.in_top5),
        "attack_success_rate": _mean(wrong[clean_correct]),
        "mean_confidence": _mean(rec.confidence),
        "mean_confidence_on_errors": _mean(rec.confidence[wrong]),
        "mean_true_class_prob": _mean(rec.true_class_prob),
        "silent_error_rate": {str(t): _mean(wrong & (rec.confidence >= t)) for t in taus},
        "errors": int(wrong.sum()),
        "mean_linf_on_success": _mean(rec.linf[wrong & clean_correct]),
        "mean_l2_on_success": _mean(rec.l2[wrong & clean_correct]),
    }


def columns(rec: Records, with_perturbation: bool = True) -> dict:
    out = {"pred": rec.pred.tolist(), "confidence": rec.confidence.tolist(),
           "true_class_prob": rec.true_class_prob.tolist(), "topk": rec.topk.tolist(),
           "topk_confidence": rec.topk_confidence.tolist()}
    if with_perturbation:
        out.update(linf=rec.linf.tolist(), l2=rec.l2.tolist())
    return out
