"""Invalid specs are rejected with a message naming the field."""

import pytest

from robustness.errors import SpecError
from robustness.spec import parse_audit_spec

BASE = {"dataset": {"name": "mnist", "n": 100}, "attacks": [{"name": "pgd"}]}


def _with(**changes):
    return {**BASE, **changes}


@pytest.mark.parametrize("spec,message", [
    (_with(attacks=[{"name": "jsma"}]), r"attacks\[0\]: .*'jsma'.*'fgsm', 'pgd', 'apgd', 'square', 'fab', 'cw', 'deepfool', 'cascade'"),
    (_with(epsilons=[0.1, -0.1]), r"epsilons\[1\]: .*greater than or equal to 0"),
    (_with(epsilons=[1.5]), r"epsilons .*L∞ ε=1.5 exceeds the input range"),
    (_with(attacks=[{"name": "pgd", "epsilons": [2.0]}]), r"attacks\[0\]: epsilons: L∞ ε=2.0 exceeds"),
    (_with(dataset={"name": "mnist", "n": 20000}), r"dataset.n: 20000 .* \(10000 examples\)"),
    (_with(dataset={"name": "mnist", "n": 10, "offset": 9995}), r"dataset.n: 10 from offset 9995"),
    (_with(dataset={"name": "imagenet"}), r"dataset.name: "),
    (_with(dataset={"name": "tensors"}), r"dataset.path: required"),
    (_with(attacks=[{"name": "pgd", "steps": 0}]), r"attacks\[0\].steps: .*greater than 0"),
    (_with(attacks=[{"name": "pgd", "stpes": 10}]), r"attacks\[0\].stpes: Extra inputs"),
    (_with(attacks=[]), r"attacks: .*at least 1"),
    (_with(top_k=0), r"top_k: "),
    (_with(attacks=[{"name": "pgd"}, {"name": "pgd"}]), r"attacks: labels .* repeat"),
    (_with(gate=[{"metric": "accuracy", "attack": "cw", "epsilon": 0.3, "op": ">=",
                  "value": 0.5}]), r"gate\[0\].attack 'cw'"),
    (_with(gate=[{"metric": "accuracy", "attack": "pgd", "epsilon": 0.25, "op": ">=",
                  "value": 0.5}]), r"gate\[0\].epsilon 0.25 is not in the ε grid"),
    (_with(taus=[1.5]), r"taus: 1.5"),
    (_with(preset="strong"), r"preset: Input should be 'standard', 'quick' or 'rand'"),
    (_with(preset="standard"), r"preset: cannot be combined with attacks"),
    (_with(attacks=[{"name": "cascade", "preset": "full"}]), r"attacks\[0\].preset: "),
    (_with(attacks=[{"name": "fab", "targets": 0}]), r"attacks\[0\].targets: "),
    (_with(attacks=[{"name": "apgd", "eot": 0}]), r"attacks\[0\].eot: "),
    (_with(attacks=[{"name": "square", "eot": 5}]), r"attacks\[0\].eot: Extra inputs"),
])
def test_invalid_specs_name_the_field(spec, message):
    with pytest.raises(SpecError, match=message):
        parse_audit_spec(spec)


def test_valid_spec_defaults_and_labels():
    spec = parse_audit_spec({"dataset": {"name": "mnist", "split": "test", "n": 1000},
                             "attacks": [{"name": "fgsm"}, {"name": "pgd", "norm": "linf",
                                                            "steps": 40, "step_size": 0.01},
                                         {"name": "pgd", "norm": "l2", "epsilons": [1, 0, 2]},
                                         {"name": "cw", "steps": 100}],
                             "epsilons": [0.3, 0.0, 0.1, 0.2], "top_k": 5, "seed": 0})
    assert spec.attack_labels() == ["fgsm", "pgd_linf", "pgd_l2", "cw"]
    assert spec.grid(spec.attacks[0]) == [0.0, 0.1, 0.2, 0.3]
    assert spec.grid(spec.attacks[2]) == [0.0, 1.0, 2.0]
    assert spec.taus == [0.5, 0.9] and spec.attacks[1].restarts == 1


def test_json_text_and_malformed_json():
    assert parse_audit_spec('{"dataset": {"name": "digits"}, "attacks": [{"name": "fgsm"}]}')
    with pytest.raises(SpecError, match="Invalid JSON"):
        parse_audit_spec('{"dataset": ')


def test_a_spec_without_attacks_runs_the_standard_cascade_and_reparses_to_itself():
    """The default audit is AutoAttack's standard cascade; its stages and their resolved
    hyperparameters are in the spec, and the stored spec parses back to the same audit."""
    from robustness.evaluation.report import resolved_attacks

    spec = parse_audit_spec({"dataset": {"name": "mnist", "n": 100}})
    assert spec.attack_labels() == ["standard"]
    assert spec.attacks[0].name == "cascade" and spec.attacks[0].preset == "standard"
    stages = resolved_attacks(spec)[0]["stages"]
    assert [s["label"] for s in stages] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert [(s["name"], s.get("loss"), s.get("targets")) for s in stages[:3]] == [
        ("apgd", "ce", 0), ("apgd", "dlr", 9), ("fab", None, 9)]
    assert stages[3]["queries"] == 5000
    assert parse_audit_spec(spec.model_dump(mode="json")) == spec
    rand = parse_audit_spec({"dataset": {"name": "mnist", "n": 100}, "preset": "rand"})
    assert rand.attack_labels() == ["rand"]
    assert {s.eot for _, s in rand.attacks[0].stages()} == {20}
    quick = parse_audit_spec({"dataset": {"name": "mnist", "n": 100}, "preset": "quick"})
    assert quick.attacks[0].passes_per_example < spec.attacks[0].passes_per_example / 10
