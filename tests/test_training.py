"""Adversarial training on real digits (8×8, seconds per model): each method must buy robust
accuracy over standard training, distillation only against cross-entropy attacks, and every
bad spec must be refused with a message naming the field."""

from __future__ import annotations

import json

import pytest
import torch

from robustness.attacks import LinfBall, pgd
from robustness.cli import main as cli
from robustness.errors import SpecError
from robustness.training import parse_training_spec, train_from_spec
from robustness.training.methods import _ramp
from robustness.training.monitor import detect_collapse

EPS = 0.2  # 8×8 digits keep 58% under PGD at ε=0.1 after standard training; 3% at 0.2
BASE = {"architecture": "madry_mnist", "dataset": {"name": "digits"}, "epochs": 12,
        "batch_size": 64, "seed": 0, "validation": {"n": 200, "steps": 5}}


def train(**spec):
    return train_from_spec(parse_training_spec({**BASE, **spec}), device="cpu")


def robust_accuracy(model, data, loss="ce", eps=EPS) -> float:
    x_adv = pgd(model, data.x, data.y, LinfBall(eps), steps=20, step_size=2.5 * eps / 20,
                restarts=2, loss=loss, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return float((model(x_adv).argmax(1) == data.y).float().mean())


def clean_accuracy(model, data) -> float:
    with torch.no_grad():
        return float((model(data.x).argmax(1) == data.y).float().mean())


@pytest.fixture(scope="module")
def standard(digits):
    result = train(method="standard", epsilon=EPS)
    _, test = digits
    return result, robust_accuracy(result.model, test)


@pytest.mark.parametrize("method, extra", [
    ("fgsm", {}),
    ("pgd", {"steps": 5}),
    ("pgd", {"steps": 5, "epsilon_warmup": 4}),
    ("trades", {"steps": 5, "beta": 3.0}),
])
def test_adversarial_training_beats_standard_under_pgd(digits, standard, method, extra):
    _, test = digits
    _std_result, std_robust = standard
    result = train(method=method, epsilon=EPS, **extra)
    robust = robust_accuracy(result.model, test)
    assert clean_accuracy(result.model, test) >= 0.8
    assert std_robust <= 0.1, "the undefended model should be breakable at ε=0.2"
    # Measured: standard 2.6%, FGSM-AT 30%, PGD-AT 32%, TRADES 36% (500 test digits).
    assert robust >= std_robust + 0.2, (method, robust, std_robust)
    # The margin (CW) loss must not find a hidden weakness either: no gradient masking.
    assert robust_accuracy(result.model, test, loss="margin") >= std_robust + 0.15


def test_distillation_masks_gradients_and_the_margin_loss_breaks_it(digits, standard):
    _, test = digits
    _, std_robust = standard
    result = train(method="distillation", epsilon=EPS, temperature=100, lr=3e-3)
    model = result.model
    assert clean_accuracy(model, test) >= 0.65
    ce = robust_accuracy(model, test)
    margin = robust_accuracy(model, test, loss="margin")
    # Against cross-entropy the distilled model looks far more robust than standard (measured
    # 42% against 2.6%) ...
    assert ce >= std_robust + 0.25, (ce, std_robust)
    # ... because its softmax is saturated: the CE gradient underflows to exactly zero.
    x = test.x[:200].clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(model(x), test.y[:200], reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    zero = float((grad.flatten(1).abs().amax(1) == 0).float().mean())
    assert zero >= 0.5, zero
    # The margin loss does not saturate and breaks it back to (about) standard training
    # (measured 0.2%).
    assert margin <= std_robust + 0.1, (margin, std_robust)
    teacher = result.card["training"]["teacher"]
    assert teacher["trained_in_job"] and teacher["temperature"] == 100


def test_distillation_from_a_given_teacher(digits, digits_model):
    # A normally trained teacher's softmax at T=100 is almost flat; T=10 keeps this short.
    result = train_from_spec(parse_training_spec({**BASE, "method": "distillation",
                                                  "temperature": 10, "epochs": 6,
                                                  "lr": 3e-3}),
                             device="cpu", teacher=digits_model)
    assert result.card["training"]["teacher"]["trained_in_job"] is False
    assert result.teacher is None
    _, test = digits
    assert clean_accuracy(result.model, test) >= 0.8


def test_a_teacher_of_another_shape_is_refused(digits_model):
    spec = parse_training_spec({**BASE, "method": "distillation", "epochs": 1,
                                "num_classes": 12})
    with pytest.raises(SpecError, match="teacher: .*12"):
        train_from_spec(spec, device="cpu", teacher=digits_model)


def test_same_seed_same_weights_and_history():
    spec = {"method": "fgsm", "epsilon": EPS, "epochs": 2}
    a, b = train(**spec), train(**spec)
    for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(va, vb), k
    strip = lambda h: [{k: v for k, v in e.items() if "seconds" not in k} for e in h]
    assert strip(a.card["training"]["history"]) == strip(b.card["training"]["history"])
    c = train(**{**spec, "seed": 1})
    assert not torch.equal(a.model.net.fc2.weight, c.model.net.fc2.weight)


def test_monitors_and_best_checkpoint(digits):
    result = train(method="fgsm", epsilon=EPS, epochs=6, checkpoint="best")
    t = result.card["training"]
    history = t["history"]
    assert [h["epoch"] for h in history] == list(range(1, 7))
    for h in history:
        assert 0 <= h["pgd_accuracy"] <= h["fgsm_accuracy"] + 0.05
        assert h["pgd_accuracy"] <= h["clean_accuracy"] + 1e-9
        assert h["loss"] > 0 and h["train_seconds"] > 0
    best = max(history, key=lambda h: (h["pgd_accuracy"], h["clean_accuracy"]))
    assert t["selected_epoch"] == best["epoch"] and t["selection_metric"] == "pgd_accuracy"
    # The kept weights are that epoch's: re-evaluating them reproduces its monitor figures.
    train_data, _ = digits
    x_val, y_val = train_data.x[-200:], train_data.y[-200:]
    with torch.no_grad():
        clean = float((result.model(x_val).argmax(1) == y_val).float().mean())
    assert clean == pytest.approx(best["clean_accuracy"])
    assert t["validation"]["n"] == 200 and t["dataset"]["train_examples"] == 1097


# Real monitor figures from FGSM-AT on MNIST (wong_mnist, ε=0.3), epochs 1-6.
COLLAPSED = [(0.954, 0.797, 0.113), (0.955, 0.921, 0.056), (0.969, 0.955, 0.107),
             (0.959, 0.956, 0.013), (0.964, 0.963, 0.006), (0.955, 0.955, 0.0)]
HEALTHY = [(0.958, 0.657, 0.226), (0.975, 0.801, 0.426), (0.979, 0.903, 0.761),
           (0.984, 0.863, 0.786), (0.986, 0.929, 0.883), (0.985, 0.939, 0.898),
           (0.989, 0.952, 0.925), (0.99, 0.942, 0.919)]

# FGSM-AT without random start (step ε, wong_mnist, ε=0.3), epochs 1-10: it never became robust,
# so there is no fall to see, only FGSM far above PGD from the first epoch on.
MASKED = [(0.772, 0.637, 0.004), (0.775, 0.621, 0.016), (0.746, 0.665, 0.006),
          (0.836, 0.768, 0.0), (0.874, 0.806, 0.013), (0.94, 0.894, 0.05),
          (0.981, 0.902, 0.241), (0.984, 0.9, 0.288), (0.985, 0.931, 0.352),
          (0.984, 0.928, 0.333)]

# Wong et al.'s recipe, seed 1 (wong_mnist, ε=0.3), epochs 1-10: a gap above 0.5 for two
# epochs, but PGD accuracy climbing through it; it ends at 0.90.
SLOW_START = [(0.948, 0.627, 0.091), (0.976, 0.833, 0.214), (0.972, 0.855, 0.719),
              (0.984, 0.909, 0.848), (0.986, 0.912, 0.644), (0.985, 0.934, 0.895),
              (0.985, 0.928, 0.847), (0.985, 0.937, 0.882), (0.988, 0.942, 0.881),
              (0.99, 0.953, 0.9)]

# Trained at ε=0.4 with ε ramped over 2 epochs, seed 3 (wong_mnist, monitors at ε=0.3): the
# collapse comes one epoch after the ramp ends.
AFTER_RAMP = [(0.973, 0.644, 0.006), (0.968, 0.859, 0.678), (0.921, 0.911, 0.0),
              (0.917, 0.0, 0.0), (0.953, 0.952, 0.0), (0.956, 0.956, 0.0)]

# The same at seed 6: PGD and FGSM accuracy fall together, epochs 1-7.
BOTH_FALL = [(0.968, 0.684, 0.008), (0.976, 0.815, 0.625), (0.979, 0.876, 0.821),
             (0.981, 0.902, 0.85), (0.972, 0.073, 0.003), (0.976, 0.083, 0.003),
             (0.982, 0.04, 0.001)]


def _history(rows):
    return [{"epoch": i + 1, "clean_accuracy": c, "fgsm_accuracy": f, "pgd_accuracy": p}
            for i, (c, f, p) in enumerate(rows)]


def test_epsilon_warmup_ramps_linearly_then_holds():
    fraction = _ramp(4)
    assert [fraction() for _ in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    off = _ramp(0)
    assert off() == 1.0
    card = train(method="pgd", epsilon=EPS, steps=2, epochs=1, epsilon_warmup=0.5,
                 dataset={"name": "digits", "n": 400}).card
    assert card["training"]["spec"]["epsilon_warmup"] == 0.5


def test_catastrophic_overfitting_detection_on_measured_runs():
    collapsed = _history(COLLAPSED)
    first = next(i for i in range(1, len(collapsed) + 1)
                 if detect_collapse(collapsed[:i], drop=0.5, gap=0.2))
    assert first == 2  # PGD 0.113 -> 0.056 while FGSM 0.921
    co = detect_collapse(collapsed[:2], drop=0.5, gap=0.2)
    assert co == {"kind": "fall", "epoch": 2, "pgd_accuracy": 0.056, "fgsm_accuracy": 0.921, "best_epoch": 1,
                  "best_pgd_accuracy": 0.113}
    healthy = _history(HEALTHY)
    assert not any(detect_collapse(healthy[:i], drop=0.5, gap=0.2)
                   for i in range(1, len(healthy) + 1))
    # Robust overfitting (a small late fall) is not a collapse: the best checkpoint handles it.
    late = _history(HEALTHY + [(0.99, 0.93, 0.88)])
    assert detect_collapse(late, drop=0.5, gap=0.2) is None
    assert detect_collapse(late, drop=0.5, gap=0.2, masking_gap=0.5) is None
    assert not any(detect_collapse(healthy[:i], drop=0.5, gap=0.2, masking_gap=0.5)
                   for i in range(1, len(healthy) + 1))
    # A collapse inside the first epoch: no fall, a persistent gap.
    masked = _history(MASKED)
    assert not any(detect_collapse(masked[:i], drop=0.5, gap=0.2) for i in range(1, 11))
    co = detect_collapse(masked[:2], drop=0.5, gap=0.2, masking_gap=0.5)
    assert co is not None and co["kind"] == "masked" and co["epoch"] == 2
    assert detect_collapse(masked[:1], drop=0.5, gap=0.2, masking_gap=0.5) is None
    # Under an ε ramp a wide gap is expected: `masked` waits for two epochs after the ramp.
    assert not any(detect_collapse(masked[:i], drop=0.5, gap=0.2, masking_gap=0.5, warmup=2)
                   for i in range(1, 4))
    co = detect_collapse(masked[:4], drop=0.5, gap=0.2, masking_gap=0.5, warmup=2)
    assert co is not None and co["kind"] == "masked" and co["epoch"] == 4
    # A fall is judged across the ramp's end: from its last epoch's 0.678 to 0.0 at epoch 3;
    # inside the ramp it is not (the same two epochs, read as the end of a 3-epoch ramp).
    ramp = _history(AFTER_RAMP)
    assert detect_collapse(ramp[1:3], drop=0.5, gap=0.2, masking_gap=0.5, warmup=3) is None
    co = detect_collapse(ramp[:3], drop=0.5, gap=0.2, masking_gap=0.5, warmup=2)
    assert co is not None and co["kind"] == "fall" and co["best_epoch"] == 2
    # PGD and FGSM accuracy collapsing together is caught as well.
    both = _history(BOTH_FALL)
    first = next(i for i in range(1, len(both) + 1)
                 if detect_collapse(both[:i], drop=0.5, gap=0.2, masking_gap=0.5, warmup=2))
    assert first == 5
    # A wide gap while PGD accuracy still climbs is a slow start, not a collapse.
    slow = _history(SLOW_START)
    assert slow[1]["fgsm_accuracy"] - slow[1]["pgd_accuracy"] > 0.5
    assert not any(detect_collapse(slow[:i], drop=0.5, gap=0.2, masking_gap=0.5)
                   for i in range(1, len(slow) + 1))


@pytest.mark.parametrize("spec, message", [
    ({"method": "fgsm"}, "epsilon: required by method 'fgsm'"),
    ({"method": "pgd", "epsilon": 0.3, "beta": 6}, ("beta: only used by method 'trades', "
                                                   "not 'pgd'")),
    ({"method": "standard", "temperature": 10}, ("temperature: only used by method "
                                                "'distillation'")),
    ({"method": "adversarial", "epsilon": 0.3}, "method: Input should be 'standard', 'fgsm'"),
    ({"method": "fgsm", "epsilon": 1.5}, "epsilon: L∞ ε=1.5 exceeds the input range"),
    ({"method": "fgsm", "epsilon": 0}, "epsilon: method 'fgsm' needs ε > 0"),
    ({"method": "fgsm", "epsilon": 0.3, "epoch": 3}, "epoch: Extra inputs are not permitted"),
    ({"method": "standard", "epochs": 0}, "epochs: Input should be greater than 0"),
    ({"method": "standard", "dataset": {"name": "digits", "n": 100}},
     "validation.n: 200 held-out examples leave none of dataset.n=100"),
    ({"method": "distillation", "temperature": 0.5}, ("temperature: Input should be greater "
                                                     "than or equal to 1")),
    ({"method": "distillation", "teacher_model_id": "m1", "teacher_epochs": 3},
     "teacher_epochs: only used when the teacher is trained in this job"),
    ({"method": "standard", "momentum": 0.5}, "momentum: only used by optimizer 'sgd'"),
    ({"method": "standard", "epsilon_warmup": 1}, ("epsilon_warmup: only used by method "
                                                  "'fgsm' or 'pgd' or 'trades'")),
    ({"method": "standard", "dataset": {"name": "mnist", "n": 70000}},
     "dataset.n: 70000 from offset 0 exceeds the train split of mnist"),
])
def test_invalid_specs_are_refused_with_the_field_named(spec, message):
    with pytest.raises(SpecError) as err:
        parse_training_spec({**BASE, **spec})
    assert message in str(err.value)


def test_method_defaults_are_resolved_into_the_card():
    r = parse_training_spec({**BASE, "method": "fgsm", "epsilon": 0.3}).resolved()
    assert r["step_size"] == pytest.approx(0.375) and r["lr_schedule"] == "cyclic"
    assert r["random_start"] is True
    r = parse_training_spec({**BASE, "method": "pgd", "epsilon": 0.3}).resolved()
    assert r["steps"] == 10 and r["step_size"] == pytest.approx(0.075)
    assert r["lr_schedule"] == "cosine"
    r = parse_training_spec({**BASE, "method": "trades", "epsilon": 0.3}).resolved()
    assert r["beta"] == 6.0
    r = parse_training_spec({**BASE, "method": "distillation"}).resolved()
    assert r["temperature"] == 100.0 and r["teacher_epochs"] == BASE["epochs"]


def test_cli_train_then_audit_loads_the_card(tmp_path, capsys):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**BASE, "method": "fgsm", "epsilon": EPS, "epochs": 3,
                                "name": "digits-fgsm"}))
    out = tmp_path / "model"
    assert cli(["train", "--spec", str(spec), "--out", str(out), "-q"]) == 0
    card = json.loads((out / "model.json").read_text())
    assert card["metadata"]["architecture"] == "madry_mnist"
    assert card["metadata"]["input_shape"] == [1, 8, 8]
    assert card["training"]["spec"]["step_size"] == pytest.approx(1.25 * EPS)
    assert len(card["training"]["history"]) == 3
    from robustness.models import file_sha256
    assert card["weights"]["sha256"] == file_sha256(out / "model.safetensors")
    memory = card["provenance"]["memory"]  # robustness.memory: the training's peak
    assert memory["rss_peak_bytes"] >= max(memory["rss_start_bytes"], memory["rss_end_bytes"])
    audit_spec = tmp_path / "audit.json"
    audit_spec.write_text(json.dumps({"dataset": {"name": "digits", "n": 100},
                                      "attacks": [{"name": "fgsm"}], "epsilons": [0.0, EPS]}))
    report = tmp_path / "report.json"
    assert cli(["audit", "--spec", str(audit_spec), "--model", str(out / "model.safetensors"),
                "--out", str(report), "-q"]) == 0
    data = json.loads(report.read_text())
    assert data["model"]["name"] == "digits-fgsm"
    assert data["model"]["sha256"] == card["weights"]["sha256"]


def test_cli_train_errors_exit_2(tmp_path, capsys):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**BASE, "method": "fgsm"}))
    assert cli(["train", "--spec", str(spec), "--out", str(tmp_path / "o")]) == 2
    assert "error: epsilon: required by method 'fgsm'" in capsys.readouterr().err
    spec.write_text(json.dumps({**BASE, "method": "distillation", "teacher_model_id": "x"}))
    assert cli(["train", "--spec", str(spec), "--out", str(tmp_path / "o")]) == 2
    assert "pass the teacher's file with --teacher" in capsys.readouterr().err
    spec.write_text(json.dumps({**BASE, "method": "standard"}))
    assert cli(["train", "--spec", str(spec), "--out", str(tmp_path / "o"),
                "--teacher", str(tmp_path / "t.safetensors")]) == 2
    assert "--teacher: only used by method 'distillation'" in capsys.readouterr().err
    spec.write_text(json.dumps({**BASE, "method": "standard", "architecture": "resnet9000"}))
    assert cli(["train", "--spec", str(spec), "--out", str(tmp_path / "o")]) == 2
    assert "unknown architecture 'resnet9000'" in capsys.readouterr().err
