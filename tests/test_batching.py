"""An audit's batch size when the spec leaves it unset (robustness.batching): measured from
what a forward+backward pass keeps, halved until it fits the free memory, and written into
the report's spec so the same audit can be run again anywhere."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from robustness.batching import CAPS, FACTOR, HEADROOM, fitting_batch, per_example_bytes
from robustness.evaluation import run_sweep
from robustness.spec import parse_audit_spec

CPU = torch.device("cpu")
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 100), nn.ReLU(),
                         nn.Linear(100, 10)).eval().requires_grad_(False)


def test_per_example_bytes_is_what_the_backward_keeps():
    # With frozen weights the input gradient needs only the ReLU's output (100 floats; the
    # weights are kept once, whatever the batch), plus the logits (10) and the input and
    # its gradient (2 × 64): 4 × (100 + 10 + 128) bytes.
    assert per_example_bytes(_mlp(), (1, 8, 8), CPU) == 4 * (100 + 10 + 128)
    with torch.no_grad():  # a caller's context does not change what an attack needs
        assert per_example_bytes(_mlp(), (1, 8, 8), CPU) == 4 * (100 + 10 + 128)


def test_the_batch_halves_until_it_fits():
    model, each = _mlp(), 4 * 238
    assert fitting_batch(model, (1, 8, 8), CPU, free=10**12).value == CAPS["cpu"]
    choice = fitting_batch(model, (1, 8, 8), CPU, free=100_000)
    assert choice.value == 16  # 16 × 952 × 3 ≤ 50,000 < 32 × 952 × 3
    assert choice.value * each * FACTOR <= 100_000 * HEADROOM < 2 * choice.value * each * FACTOR
    assert fitting_batch(model, (1, 8, 8), CPU, free=0).value == 1
    # A service's largest batch (ROBUSTNESS_MAX_BATCH_SIZE) bounds it too, to a power of two.
    assert fitting_batch(model, (1, 8, 8), CPU, free=10**12, limit=100).value == 64
    assert fitting_batch(model, (1, 8, 8), CPU, free=10**12, limit=128).value == 128
    assert choice.provenance() == {"value": 16, "chosen": "free memory",
                                   "per_example_bytes": each, "free_bytes": 100_000,
                                   "cap": CAPS["cpu"]}


def test_the_probe_leaves_no_trace():
    # A model left in train mode (batch norm, dropout) is audited as it came: the probe
    # neither moves its running statistics nor draws from the global generator.
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                          nn.Flatten(), nn.Linear(144, 10)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    per_example_bytes(model, (1, 8, 8), CPU)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def _audit(model, digits, device, **extra):
    _, test = digits
    n = 300
    data = SimpleNamespace(x=test.x[:n], y=test.y[:n], indices=test.indices[:n],
                           description={"name": "digits", "split": "test", "n": n})
    spec = parse_audit_spec({"dataset": {"name": "digits", "n": n}, "seed": 0,
                             "epsilons": [0.0, 0.1, 0.2],
                             "attacks": [{"name": "fgsm"}, {"name": "pgd", "steps": 5}],
                             **extra})
    return run_sweep(model, data, spec, device=device).report


def _figures(report) -> list:
    return [report["clean"], [r["accuracy"] for r in report["results"]],
            report["examples"]]


def _the_chosen_batch_reproduces_the_audit(model, digits, device):
    auto = _audit(model, digits, device)
    chosen = auto["provenance"]["batch_size"]
    assert chosen["chosen"] == "free memory"
    assert chosen["value"] == auto["spec"]["batch_size"]
    assert chosen["value"] & (chosen["value"] - 1) == 0  # a power of two
    assert chosen["value"] <= CAPS[torch.device(device).type]
    again = _audit(model, digits, device, batch_size=chosen["value"])
    assert again["provenance"]["batch_size"] == {"value": chosen["value"], "chosen": "spec",
                                                 "per_example_bytes": None,
                                                 "free_bytes": None, "cap": None}
    assert _figures(again) == _figures(auto)
    return auto


def test_an_audit_without_batch_size_batches_as_before_on_a_cpu(digits_model, digits):
    # A small model on a CPU: the cap, 256, the batch every audit had before it was chosen.
    auto = _the_chosen_batch_reproduces_the_audit(digits_model, digits, "cpu")
    assert auto["spec"]["batch_size"] == 256
    assert auto["results"][-1]["accuracy"] < auto["clean"]["accuracy"]


@pytest.mark.cuda
@CUDA
def test_an_audit_without_batch_size_on_cuda(digits_model, digits):
    import copy

    auto = _the_chosen_batch_reproduces_the_audit(copy.deepcopy(digits_model).cuda(), digits,
                                                  "cuda")
    assert auto["spec"]["batch_size"] == CAPS["cuda"]  # a small model fills the cap
