"""Issue #2's acceptance figures on real MNIST: a Madry-style CNN trained normally for two
epochs, attacked on the first 1000 test images, and compared with torchattacks on the same
model and examples."""

import pytest
import torch

from robustness.data import load_dataset
from robustness.evaluation import run_sweep
from robustness.models import Classifier, ModelMetadata, build_model
from robustness.spec import DatasetSpec, parse_audit_spec
from robustness.training import fit

pytestmark = pytest.mark.mnist

SWEEP = {"dataset": {"name": "mnist", "split": "test", "n": 1000},
         "attacks": [{"name": "fgsm"},
                     {"name": "pgd", "norm": "linf", "steps": 40, "step_size": 0.01}],
         "epsilons": [0.0, 0.1, 0.2, 0.3], "seed": 0, "batch_size": 500}


@pytest.fixture(scope="module")
def mnist_model(data_root):
    train = load_dataset(DatasetSpec(name="mnist", split="train"), data_root)
    # The initial weights come from the global generator: seed it, so that the model does not
    # depend on which tests ran before in the same process (fit seeds only its own steps).
    torch.manual_seed(0)
    net = fit(build_model("madry_mnist", 10, (1, 28, 28)), train.x, train.y, epochs=2,
              batch_size=128, lr=1e-3, seed=0, schedule="cosine")
    model = Classifier(net, ModelMetadata(architecture="madry_mnist", num_classes=10,
                                          input_shape=[1, 28, 28]))
    return model.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def mnist_test(data_root):
    return load_dataset(DatasetSpec(name="mnist", split="test", n=1000), data_root)


@pytest.fixture(scope="module")
def sweep(mnist_model, mnist_test):
    report = run_sweep(mnist_model, mnist_test, parse_audit_spec(SWEEP), device="cpu").report
    return {(r["label"], r["epsilon"]): r for r in report["results"]} | {"clean": report["clean"]}


def test_clean_accuracy_and_pgd40_break_a_normally_trained_cnn(sweep):
    assert sweep["clean"]["accuracy"] >= 0.985
    assert sweep[("pgd", 0.3)]["accuracy"] <= 0.01
    for eps in (0.1, 0.2, 0.3):
        assert sweep[("pgd", eps)]["accuracy"] <= sweep[("fgsm", eps)]["accuracy"]
    # A broken normal model is confidently wrong: most PGD errors at ε=0.3 are silent at τ=0.9.
    assert sweep[("pgd", 0.3)]["mean_confidence_on_errors"] > 0.9
    assert sweep[("pgd", 0.3)]["silent_error_rate"]["0.9"] > 0.8


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_at_least_as_strong_as_torchattacks_linf(sweep, mnist_model, mnist_test, eps):
    torchattacks = pytest.importorskip("torchattacks")
    x, y = mnist_test.x, mnist_test.y

    def robust_acc(attack):
        adv = torch.cat([attack(x[i:i + 500], y[i:i + 500]) for i in range(0, len(x), 500)])
        assert (adv - x).abs().max() <= eps + 1e-6
        with torch.no_grad():
            return float((mnist_model(adv).argmax(1) == y).float().mean())

    torch.manual_seed(0)
    theirs_pgd = robust_acc(torchattacks.PGD(mnist_model, eps=eps, alpha=0.01, steps=40,
                                             random_start=True))
    theirs_fgsm = robust_acc(torchattacks.FGSM(mnist_model, eps=eps))
    assert sweep[("pgd", eps)]["accuracy"] <= theirs_pgd + 0.005
    assert sweep[("fgsm", eps)]["accuracy"] <= theirs_fgsm + 0.005


def test_l2_attacks_cw_beats_pgd_l2_on_norm_and_matches_torchattacks(mnist_model, mnist_test):
    torchattacks = pytest.importorskip("torchattacks")
    n = 200
    spec = parse_audit_spec({
        "dataset": {"name": "mnist", "split": "test", "n": n},
        "attacks": [{"name": "cw", "steps": 100, "binary_search_steps": 3},
                    {"name": "pgd", "norm": "l2", "steps": 40}],
        "epsilons": [0.0, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0], "seed": 0})
    data = mnist_test
    sub = type(data)(**{**data.__dict__, "x": data.x[:n], "y": data.y[:n],
                        "indices": data.indices[:n]})
    report = run_sweep(mnist_model, sub, spec, device="cpu").report
    (cw,) = report["minimal_perturbation"]
    assert cw["success_rate"] >= 0.99
    # At equal success: the smallest ε where PGD-L2 breaks as many examples as CW does.
    pgd_rows = sorted((r for r in report["results"] if r["label"] == "pgd"),
                      key=lambda r: r["epsilon"])
    match = next(r for r in pgd_rows if r["attack_success_rate"] >= cw["success_rate"] - 0.005)
    assert cw["mean_norm"] < match["mean_l2_on_success"]
    # torchattacks' CW (c=1, κ=0, 100 steps) on the same examples: ours succeeds as often.
    x, y = sub.x, sub.y
    keep = torch.tensor(report["examples"]["clean"]["pred"]) == y
    adv = torchattacks.CW(mnist_model, c=1, kappa=0, steps=100, lr=0.01)(x[keep], y[keep])
    with torch.no_grad():
        theirs = float((mnist_model(adv).argmax(1) != y[keep]).float().mean())
    assert cw["success_rate"] >= theirs - 0.005
