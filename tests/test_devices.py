"""The fast paths for accelerators, checked where they can run: channels-last and mixed
precision change how the attacks compute, never what the report says. The same checks run on
CUDA (marked `cuda`: skipped without a device; bench/gpu_check.sh runs them)."""

import copy
from types import SimpleNamespace

import pytest
import torch

from robustness.evaluation import run_sweep
from robustness.spec import parse_audit_spec

N = 200
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _data(digits):
    _, test = digits
    return SimpleNamespace(x=test.x[:N], y=test.y[:N], indices=test.indices[:N],
                           description={"name": "digits", "split": "test", "n": N})


def _audit(model, data, device, precision="fp32", layout=None):
    spec = parse_audit_spec({"dataset": {"name": "digits", "n": N}, "batch_size": 100,
                             "epsilons": [0.0, 0.05, 0.1, 0.2], "seed": 0,
                             "precision": precision,
                             "attacks": [{"name": "fgsm"}, {"name": "pgd", "steps": 10}]})
    return run_sweep(model, data, spec, device=device, collect_adversarial=True, layout=layout)


def _accuracies(result):
    return [r["accuracy"] for r in result.report["results"]]


def _same_figures_whatever_the_layout_and_precision(model, digits, device):
    data = _data(digits)
    base = _audit(model, data, device, layout=torch.contiguous_format)
    acc = _accuracies(base)
    assert acc[0] > 0.9 and acc[-1] < 0.5  # every ε decides something
    # Channels-last: the same convolutions in another memory order, so the same figures
    # (a pixel's rounding may move one example).
    last = _audit(copy.deepcopy(model), data, device, layout=torch.channels_last)
    assert all(abs(a - b) <= 1 / N for a, b in zip(_accuracies(last), acc))
    # Mixed precision: the attacks run in half precision, but the clean figures are the
    # float32 model's to the last digit, every record is the float32 model's prediction on
    # the point found, and the attack is as strong give or take a few examples.
    amp = _audit(model, data, device, precision="amp", layout=torch.contiguous_format)
    assert amp.report["clean"] == base.report["clean"]
    assert all(abs(a - b) <= 0.03 for a, b in zip(_accuracies(amp), acc))
    cols = next(c for c in amp.report["examples"]["adversarial"]
                if c["label"] == "pgd" and c["epsilon"] == 0.1)
    with torch.no_grad():
        pred = model(amp.adversarial[("pgd", 0.1)].to(device)).argmax(1).cpu()
    assert pred.tolist() == cols["pred"]
    assert amp.report["spec"]["precision"] == "amp"


def test_channels_last_and_mixed_precision_on_cpu(digits_model, digits):
    _same_figures_whatever_the_layout_and_precision(digits_model, digits, "cpu")


@pytest.mark.cuda
@CUDA
def test_channels_last_and_mixed_precision_on_cuda(digits_model, digits):
    model = copy.deepcopy(digits_model).to("cuda")
    _same_figures_whatever_the_layout_and_precision(model, digits, "cuda")
