"""Comparing audits, baseline gate rules and the per-class breakdown, on real digits: audit A
runs FGSM and audit B runs PGD under the same label on the same examples, so B finds more
adversarials and the comparison must say so, example by example."""

from __future__ import annotations

import json

import pytest

from robustness.data import load_dataset
from robustness.errors import SpecError
from robustness.evaluation import run_sweep
from robustness.evaluation.compare import compare_reports
from robustness.spec import parse_audit_spec

DATA = {"name": "digits", "n": 120}


def audit(model, attack: dict, data=DATA, **extra) -> dict:
    spec = parse_audit_spec({"dataset": data, "attacks": [{**attack, "label": "atk"}],
                             "epsilons": [0.0, 0.1, 0.15], "seed": 0, **extra})
    return run_sweep(model, load_dataset(spec.dataset), spec, device="cpu").report


@pytest.fixture(scope="module")
def reports(digits_model):
    return (audit(digits_model, {"name": "fgsm"}),
            audit(digits_model, {"name": "pgd", "steps": 20, "restarts": 2}))


def test_a_stronger_attack_is_a_regression_whose_flips_add_up(reports):
    a, b = reports
    out = compare_reports(a, b, tolerance=0.01)
    assert out["verdict"] == "regressed" and out["clean"]["delta"] == 0
    for row in out["results"]:
        # Every change of accuracy is the examples that flipped, one way or the other.
        assert row["delta"] == pytest.approx(
            (len(row["fixed_in_b"]) - len(row["broken_in_b"])) / 120)
        broken = set(row["broken_in_b"])
        col_a = next(c for c in a["examples"]["adversarial"] if c["epsilon"] == row["epsilon"])
        col_b = next(c for c in b["examples"]["adversarial"] if c["epsilon"] == row["epsilon"])
        index, label = a["examples"]["index"], a["examples"]["label"]
        assert broken == {index[i] for i in range(120)
                          if col_a["pred"][i] == label[i] != col_b["pred"][i]}
    worst = next(r for r in out["results"] if r["epsilon"] == 0.15)
    assert worst["delta"] < -0.05 and len(worst["broken_in_b"]) > 5
    assert {"attack": "atk", "epsilon": 0.15, "delta": worst["delta"]} in out["regressions"]
    # B against itself: unchanged; A against B: improved; a lax tolerance: unchanged too.
    assert compare_reports(b, b)["verdict"] == "unchanged"
    assert compare_reports(b, a)["verdict"] == "improved"
    assert compare_reports(a, b, tolerance=1.0)["verdict"] == "unchanged"


def test_audits_of_different_examples_are_not_compared(digits_model, reports):
    other = audit(digits_model, {"name": "fgsm"}, data={**DATA, "offset": 5})
    with pytest.raises(SpecError, match="not on the same"):
        compare_reports(reports[0], other)


def test_a_baseline_gate_rule_bounds_a_figure_by_the_baselines(digits_model, reports, tmp_path):
    """`robustness audit` with a gate rule against a baseline report file: B's PGD accuracy
    at ε=0.15 must not fall more than `tolerance` below A's FGSM one."""
    from robustness.cli import main
    from robustness.models import save_state_dict

    a, b = reports
    (tmp_path / "a.json").write_text(json.dumps(a))
    save_state_dict(digits_model.net, tmp_path / "m.safetensors")
    fgsm = next(r["accuracy"] for r in a["results"] if r["epsilon"] == 0.15)
    pgd = next(r["accuracy"] for r in b["results"] if r["epsilon"] == 0.15)
    assert pgd < fgsm - 0.05

    def run(tolerance: float) -> tuple[int, dict]:
        spec = {"dataset": DATA, "attacks": [{"name": "pgd", "steps": 20, "restarts": 2,
                                              "label": "atk"}],
                "epsilons": [0.0, 0.1, 0.15], "seed": 0,
                "gate": [{"metric": "accuracy", "attack": "atk", "epsilon": 0.15, "op": ">=",
                          "baseline": str(tmp_path / "a.json"), "tolerance": tolerance}]}
        (tmp_path / "spec.json").write_text(json.dumps(spec))
        code = main(["audit", "--spec", str(tmp_path / "spec.json"), "--model",
                     str(tmp_path / "m.safetensors"), "--architecture", "madry_mnist",
                     "--num-classes", "10", "--out", str(tmp_path / "b.json"), "-q",
                     "--device", "cpu"])
        return code, json.loads((tmp_path / "b.json").read_text())

    code, report = run(0.01)
    assert code == 1 and not report["gate"]["passed"]
    (failed,) = report["gate"]["failed"]
    assert failed["baseline_value"] == fgsm and failed["actual"] == pgd
    code, report = run(fgsm - pgd + 0.01)
    assert code == 0 and report["gate"]["passed"]
    with pytest.raises(SpecError, match="value: give a value or a baseline"):
        parse_audit_spec({"dataset": DATA, "attacks": [{"name": "fgsm"}], "epsilons": [0.1],
                          "gate": [{"metric": "accuracy", "attack": "fgsm", "epsilon": 0.1,
                                    "op": ">=", "value": 0.5, "baseline": "x"}]})


def test_every_report_breaks_accuracy_down_by_class(reports, digits_model):
    a, _ = reports
    per = a["per_class"]
    classes = per["classes"]
    assert sum(c["n"] for c in classes) == 120
    assert sum(c["clean_accuracy"] * c["n"] for c in classes) / 120 == \
        pytest.approx(a["clean"]["accuracy"])
    for j, row in enumerate(a["results"]):
        robust = sum(c["robust"][j]["accuracy"] * c["n"] for c in classes) / 120
        assert robust == pytest.approx(row["accuracy"])
        errors = next(c for c in per["confusion"] if c["epsilon"] == row["epsilon"])["errors"]
        assert sum(n for _, _, n in errors) == round(120 * (1 - row["accuracy"]))
        assert all(t != p for t, p, _ in errors)
    # Class names come from the model's metadata.
    from robustness.models import ModelMetadata

    named = digits_model.metadata.model_copy(update={"labels": [f"digit {i}" for i in
                                                                range(10)]})
    digits_model.metadata, old = named, digits_model.metadata
    try:
        report = audit(digits_model, {"name": "fgsm"}, data={**DATA, "n": 20})
    finally:
        digits_model.metadata = old
    assert isinstance(old, ModelMetadata)
    assert [c["name"] for c in report["per_class"]["classes"]] == \
        [f"digit {c['class']}" for c in report["per_class"]["classes"]]
