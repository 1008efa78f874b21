"""Validity checks on planted models: each model that breaks an evaluation in a known way is
flagged by the check for that way, and an honest model gets no warn or fail."""

from __future__ import annotations

import pytest
import torch

from robustness.evaluation import run_sweep
from robustness.evaluation.gate import worst_check
from robustness.spec import parse_audit_spec

# Cheap audit: the attacking probes (loss_disagreement, unbounded_epsilon) are skipped.
QUICK = {"dataset": {"name": "digits", "n": 200}, "epsilons": [0.0, 0.05, 0.1],
         "attacks": [{"name": "fgsm"}, {"name": "pgd", "steps": 20}]}
# Heavy enough (APGD-T, 9 targets) that the probes fit in a tenth of it.
HEAVY = {"dataset": {"name": "digits", "n": 200}, "epsilons": [0.1],
         "attacks": [{"name": "apgd", "loss": "dlr", "targets": 9, "steps": 100}]}


class Wrapped(torch.nn.Module):
    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, x):
        return self.f(x)


def planted(model) -> dict:
    dropout = torch.nn.Sequential(model, torch.nn.Dropout(0.3)).train()
    batchnorm = torch.nn.Sequential(torch.nn.BatchNorm2d(1), model).train()
    return {
        "logits x1000": Wrapped(lambda x: model(x) * 1000.0),  # distillation at deployment
        "quantized input": Wrapped(lambda x: model(torch.round(x * 4) / 4)),
        "noise at inference": Wrapped(lambda x: model(x + 0.05 * torch.randn_like(x))),
        "probabilities": Wrapped(lambda x: torch.softmax(model(x), 1)),
        "dropout on": dropout,
        "batch norm in train mode": batchnorm,
    }


FLAGGED_BY = {
    "logits x1000": {"vanishing_gradients"},
    "quantized input": {"vanishing_gradients"},
    "noise at inference": {"randomness"},
    "probabilities": {"probabilities"},
    "dropout on": {"randomness"},
    "batch norm in train mode": {"batch_dependence"},
}


def _audit(model, digits, body) -> dict:
    _, test = digits
    return run_sweep(model, test, parse_audit_spec(body), device="cpu").report


def _flags(report) -> dict:
    return {c["id"]: c["status"] for c in report["checks"] if c["status"] != "pass"}


@pytest.mark.parametrize("body", [QUICK, HEAVY], ids=["quick", "heavy"])
def test_an_honest_model_passes_every_check(digits_model, digits, body):
    report = _audit(digits_model, digits, body)
    ids = {c["id"] for c in report["checks"]}
    assert _flags(report) == {}, report["checks"]
    assert {"probabilities", "randomness", "batch_dependence", "vanishing_gradients",
            "noise_baseline", "eight_bit"} <= ids
    if body is QUICK:
        assert "iterative_beats_single_step" in ids and "unbounded_epsilon" not in ids
    else:  # the probes ran, and cost at most a tenth of the audit's passes
        assert {"loss_disagreement", "unbounded_epsilon", "black_box"} <= ids
    assert worst_check(report) == "pass"


@pytest.mark.parametrize("name", sorted(FLAGGED_BY))
def test_each_planted_model_is_flagged_by_its_check(digits_model, digits, name):
    model = planted(digits_model)[name]
    failed = {k for k, v in _flags(_audit(model, digits, QUICK)).items() if v == "fail"}
    assert FLAGGED_BY[name] <= failed, failed


def test_the_probes_catch_scaled_logits_and_a_gradient_that_never_moves(digits_model, digits):
    plants = planted(digits_model)
    scaled = _flags(_audit(plants["logits x1000"], digits, HEAVY))
    assert scaled.get("loss_disagreement") == "fail", scaled
    quantized = _flags(_audit(plants["quantized input"], digits, HEAVY))
    assert quantized.get("unbounded_epsilon") == "fail", quantized
    assert quantized.get("black_box") == "fail", quantized


def test_black_box_reads_the_audits_own_square_when_it_ran_one(digits_model, digits):
    """With Square in the audit, no probe runs: its own results are compared (quantized
    inputs: APGD is blind, Square is not; the honest model: they agree)."""
    body = {"dataset": {"name": "digits", "n": 200}, "epsilons": [0.0, 0.1],
            "attacks": [{"name": "apgd", "loss": "dlr", "steps": 20},
                        {"name": "square", "queries": 300}]}
    honest = {c["id"]: c for c in _audit(digits_model, digits, body)["checks"]}
    assert honest["black_box"]["status"] == "pass"
    assert "the audit's Square" in honest["black_box"]["detail"]
    quantized = _audit(planted(digits_model)["quantized input"], digits, body)
    check = next(c for c in quantized["checks"] if c["id"] == "black_box")
    assert check["status"] == "fail" and check["figures"]["broken_by_square"] >= 10
    accuracy = {r["label"]: r["accuracy"] for r in quantized["results"] if r["epsilon"] == 0.1}
    assert accuracy["square"] < accuracy["apgd"] - 0.1


def test_a_gate_can_require_the_checks_and_the_cli_exit_code_says_so(digits_model, digits):
    from robustness.cli import summary_lines

    body = {**QUICK, "gate": [{"metric": "checks", "op": "==", "value": "pass"}]}
    assert _audit(digits_model, digits, body)["gate"]["passed"]
    report = _audit(planted(digits_model)["probabilities"], digits, body)
    assert not report["gate"]["passed"]
    assert report["gate"]["failed"][0]["actual"] == "fail"
    assert any(line.startswith("check FAIL probabilities") for line in summary_lines(report))
    lenient = {**QUICK, "gate": [{"metric": "checks", "op": "<=", "value": "warn"}]}
    assert not _audit(planted(digits_model)["probabilities"], digits, lenient)["gate"]["passed"]
