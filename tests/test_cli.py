"""`robustness audit` as a user runs it: files in, report out, exit codes and one-line errors."""

import json
import subprocess
import sys

import pytest
import torch

from robustness.cli import main
from robustness.models import save_state_dict

SPEC = {"dataset": {"name": "digits", "split": "test", "n": 100},
        "attacks": [{"name": "fgsm"}, {"name": "pgd", "steps": 5}],
        "epsilons": [0.0, 0.1], "seed": 0}


@pytest.fixture(scope="module")
def model_files(digits_model, tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    weights = d / "digits.safetensors"
    save_state_dict(digits_model.net, weights)
    (d / "digits.json").write_text(json.dumps({"name": "digits", "architecture": "madry_mnist",
                                               "num_classes": 10, "input_shape": [1, 8, 8]}))
    return d, weights


def _write(path, obj):
    path.write_text(json.dumps(obj))
    return str(path)


def test_audit_writes_the_report_and_reads_the_sidecar_metadata(model_files, digits_model,
                                                                 digits, capsys):
    d, weights = model_files
    out = d / "report.json"
    code = main(["audit", "--spec", _write(d / "spec.json", SPEC), "--model", str(weights),
                 "--out", str(out), "--adversarial-out", str(d / "adv.npz"), "--device", "cpu"])
    assert code == 0
    report = json.loads(out.read_text())
    _, test = digits
    with torch.no_grad():
        expected = float((digits_model(test.x[:100]).argmax(1) == test.y[:100]).float().mean())
    assert report["clean"]["accuracy"] == pytest.approx(expected)
    assert report["model"]["architecture"] == "madry_mnist"
    assert report["model"]["format"] == "safetensors" and len(report["model"]["sha256"]) == 64
    assert report["dataset"]["n"] == 100
    assert "pgd" in capsys.readouterr().err  # the summary table
    assert (d / "adv.npz").stat().st_size > 0


def test_failed_gate_exits_1(model_files):
    d, weights = model_files
    spec = {**SPEC, "gate": [{"metric": "accuracy", "attack": "pgd", "epsilon": 0.1,
                              "op": ">=", "value": 0.99}]}
    code = main(["audit", "--spec", _write(d / "gate.json", spec), "--model", str(weights),
                 "--out", str(d / "gated.json"), "-q"])
    assert code == 1
    gate = json.loads((d / "gated.json").read_text())["gate"]
    assert gate["passed"] is False and gate["failed"][0]["actual"] < 0.99


@pytest.mark.parametrize("spec,args,message", [
    ({**SPEC, "attacks": [{"name": "boom"}]}, [], "attacks[0]: Input tag 'boom'"),
    ({**SPEC, "epsilons": [-1]}, [], "epsilons[0]: Input should be greater than or equal to 0"),
    ({**SPEC, "dataset": {"name": "digits", "n": 501}}, [], "dataset.n: 501"),
    ({**SPEC, "dataset": {"name": "mnist", "n": 5}}, ["--data-root", "/nonexistent"],
     "/nonexistent/MNIST/raw"),
    (SPEC, ["--architecture", "lenet_mnist"], "at least 12x12 pixels"),
    (SPEC, ["--architecture", "preact_resnet18"], "missing"),
    (SPEC, ["--num-classes", "12"], "num_classes"),
])
def test_bad_input_exits_2_with_one_line(model_files, capsys, spec, args, message):
    d, weights = model_files
    code = main(["audit", "--spec", _write(d / "bad.json", spec), "--model", str(weights),
                 "--out", str(d / "bad-report.json"), "-q", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and message in err, err


def test_console_script_runs_in_a_subprocess(model_files):
    d, weights = model_files
    proc = subprocess.run([sys.executable, "-m", "robustness", "audit", "--spec",
                           _write(d / "sub.json", SPEC), "--model", str(weights), "--out",
                           str(d / "sub-report.json"), "-q"], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((d / "sub-report.json").read_text())["results"][0]["attack"] == "fgsm"


def test_summary_table_prints_rows_without_errors():
    """A row with no errors has no confidence on errors: printed as '-', not a crash."""
    from robustness.cli import summary_lines

    row = {"label": "pgd", "norm": "linf", "epsilon": 0.3, "accuracy": 1.0,
           "attack_success_rate": 0.0, "mean_confidence_on_errors": None,
           "silent_error_rate": {"0.5": 0.0, "0.9": 0.0}}
    lines = summary_lines({"clean": {"accuracy": 1.0}, "examples": {"index": [0]},
                           "results": [row]})
    assert lines[-1].split() == ["pgd", "linf", "0.3", "1.0000", "0.0000", "-", "0.0000"]


def test_a_failed_validity_check_exits_3_even_when_the_gate_passes(digits_model, tmp_path,
                                                                   capsys):
    """A model that returns probabilities (a TorchScript archive of softmax(logits)): the
    report's figures cannot be trusted, whatever its gate says."""
    class Probabilities(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = digits_model.net

        def forward(self, x):
            return torch.softmax(self.net(x), 1)

    path = tmp_path / "probs.pt"
    torch.jit.trace(Probabilities().eval(), torch.rand(2, 1, 8, 8)).save(str(path))
    spec = {**SPEC, "gate": [{"metric": "accuracy", "attack": "clean", "op": ">=",
                              "value": 0.5}]}
    code = main(["audit", "--spec", _write(tmp_path / "spec.json", spec), "--model", str(path),
                 "--num-classes", "10", "--out", str(tmp_path / "r.json"), "--device", "cpu"])
    assert code == 3
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["gate"]["passed"] is True
    assert "check FAIL probabilities" in capsys.readouterr().err
