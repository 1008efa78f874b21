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


STANDARD = {"dataset": {"name": "digits", "n": 100}, "epsilons": [0.1]}


@pytest.fixture(scope="module")
def small_model(digits):
    """A two-layer perceptron on digits (~95% clean): `standard` (5000 Square queries on
    every robust example) runs on it in seconds, where the CNN takes minutes."""
    from robustness.training import fit

    train, _ = digits
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 64), torch.nn.ReLU(),
                              torch.nn.Linear(64, 10))
    fit(net, train.x, train.y, epochs=30, batch_size=64, lr=3e-3, seed=0)
    return net.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def digits100():
    """The first 100 test digits, as the audits below see them (a pair like `digits`)."""
    from robustness.data import load_dataset
    from robustness.spec import DatasetSpec

    return None, load_dataset(DatasetSpec(name="digits", split="test", n=100))


def _robust(report) -> float:
    return next(r["accuracy"] for r in report["results"] if r["epsilon"] == 0.1)


def _truth(honest, name, model, digits) -> float:
    """What an attack that sees through the plant finds: the honest model's standard figure
    where the plant keeps its decisions (scaled logits, probabilities), BPDA (a straight-
    through gradient) for quantized inputs, EOT (`rand`) for random models."""
    if name in ("logits x1000", "probabilities"):
        return _robust(_audit(honest, digits, STANDARD))
    if name == "quantized input":
        bpda = Wrapped(lambda x: honest(x + (torch.round(x * 4) / 4 - x).detach()))
        _, test = digits
        x, y = test.x, test.y
        robust = model(x).argmax(1) == y
        for loss in ("ce", "dlr"):
            attack = parse_audit_spec({**STANDARD, "attacks": [{"name": "apgd", "loss": loss}]})
            adv = attack.attacks[0].run(bpda, x, y, 0.1,
                                        generator=torch.Generator().manual_seed(0))
            robust &= model(adv).argmax(1) == y
        return float(robust.float().mean())
    return _robust(_audit(model, digits, {**STANDARD, "preset": "rand"}))


@pytest.mark.parametrize("name", ["logits x1000", "quantized input", "noise at inference",
                                  "probabilities", "dropout on"])
def test_standard_finds_each_planted_models_true_robustness_and_flags_it(small_model, digits100,
                                                                         name):
    """Under the default audit (`standard`) a planted model's robust accuracy is near what an
    attack that sees through the plant finds, and its check fails."""
    model = planted(small_model)[name]
    torch.manual_seed(0)
    report = _audit(model, digits100, STANDARD)
    failed = {k for k, v in _flags(report).items() if v == "fail"}
    assert FLAGGED_BY[name] <= failed, failed
    truth = _truth(small_model, name, model, digits100)
    assert _robust(report) <= truth + 0.05, (_robust(report), truth)


def test_an_honest_model_passes_every_check_under_standard(small_model, digits100):
    report = _audit(small_model, digits100, STANDARD)
    assert _flags(report) == {}, report["checks"]
    row = next(r for r in report["results"] if r["epsilon"] == 0.1)
    assert [s["label"] for s in row["stages"]] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert row["stages"][-1]["accuracy"] == pytest.approx(row["accuracy"])
    assert sum(s["broken"] for s in row["stages"]) == row["errors"] - report["clean"]["errors"]
    assert [a["label"] for a in report["provenance"]["attacks"][0]["stages"]] == [
        "apgd-ce", "apgd-t", "fab-t", "square"]


def test_convergence_flags_an_attack_stopped_too_early(digits_model, digits):
    """PGD with 5 steps of 0.02 cannot leave a 0.1 ball: twice the steps break many more;
    APGD (100 steps) barely moves when doubled (0.4 pp on these digits)."""
    def check(attack):
        body = {"dataset": {"name": "digits"}, "epsilons": [0.05, 0.1, 0.15, 0.2],
                "attacks": [attack]}
        return next(c for c in _audit(digits_model, digits, body)["checks"]
                    if c["id"] == "convergence")

    short = check({"name": "pgd", "steps": 5, "step_size": 0.02})
    assert short["status"] == "fail", short
    assert short["figures"]["sample"] >= 20 and short["figures"]["newly_broken"] >= 5
    assert check({"name": "apgd"})["status"] == "pass"


def test_preprocessing_flags_normalization_that_does_not_fit_the_data(digits_model, digits):
    from robustness.models import Classifier, ModelMetadata

    def audited(**declared):
        meta = ModelMetadata(architecture="madry_mnist", num_classes=10, input_shape=[1, 8, 8],
                             **declared)
        model = Classifier(digits_model.net, metadata=meta).eval()
        return next((c for c in _audit(model, digits, QUICK)["checks"]
                     if c["id"] == "preprocessing"), None)

    assert audited() is None  # nothing declared, nothing to compare
    assert audited(accuracy=0.95)["status"] == "pass"
    units = audited(preprocessing={"mean": [33.0], "std": [60.0]})
    assert units["status"] == "fail" and "0-255 units" in units["detail"]
    # Another data set's normalization: the statistics are off and accuracy collapses.
    other = audited(preprocessing={"mean": [0.9], "std": [0.3]}, accuracy=0.95)
    assert other["status"] == "fail", other
    assert other["figures"]["clean_accuracy"] < 0.5 and "far below" in other["detail"]
    assert "far from the data's own statistics" in other["detail"]
    # Plausible statistics, accuracy 8 pp below the declared: a warning.
    close = audited(preprocessing={"mean": [0.5], "std": [0.5]}, accuracy=0.95)
    assert close["status"] == "warn" and "far below" in close["detail"], close


@pytest.mark.parametrize("broken, status", [(3, "pass"), (4, "pass"), (5, "warn"), (6, "fail")])
def test_black_box_thresholds(digits_model, digits, broken, status):
    """Of 100 examples every gradient attack left robust, Square breaking 5 warns (partial
    masking: FGSM-AT trained at ε=0.4 showed 4.1-4.8% on all of MNIST's test set), more than
    5 fails, and up to 3% passes (PGD-trained MNIST models show 1-2%); 4 is too few to warn."""
    from robustness.evaluation.checks import black_box

    robust = torch.zeros(200, dtype=torch.bool)
    robust[:100] = True
    square_broken = torch.zeros(200, dtype=torch.bool)
    square_broken[:broken] = True
    square_broken[150:160] = True  # examples a gradient attack had broken already: not counted
    x, y = digits[1].x, digits[1].y
    check = black_box(digits_model, x[:200], y[:200], "linf", 0.1, robust, square_broken, None)
    assert check["status"] == status
    assert (check["figures"]["broken_by_square"], check["figures"]["gradient_robust"]) == (
        broken, 100)
