"""Randomized smoothing (issue 14): CERTIFY and PREDICT against closed forms, the bound's
coverage over seeded repetitions, the cost in forward passes, the spec and the CLI."""

from __future__ import annotations

import json
import math
from itertools import pairwise

import pytest
import torch
from scipy.stats import norm

from robustness.models import Classifier, ModelMetadata
from robustness.smoothing import (
    certify,
    certify_all,
    generator_for,
    lower_confidence_bound,
    predict,
)

SHAPE = (1, 4, 4)


class Linear(torch.nn.Module):
    """f(x) = class 0 if w·x + b > 0 else class 1, with ‖w‖ = 1: the smoothed classifier's
    p_A at x is Φ(|w·x + b| / σ), so its exact certified radius is |w·x + b|, the distance to
    the decision boundary."""

    def __init__(self):
        super().__init__()
        w = torch.linspace(-1, 1, math.prod(SHAPE))
        self.register_buffer("w", w / w.norm())
        self.b = -0.3
        self.rows = 0  # forward passes, one per input row

    def margin(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.w + self.b

    def forward(self, x):
        self.rows += x.shape[0]
        z = self.margin(x)
        return torch.stack([z, -z], dim=1)


def linear():
    net = Linear()
    return Classifier(net, ModelMetadata(num_classes=2, input_shape=list(SHAPE))).eval(), net


def at_distance(net: Linear, d: float) -> torch.Tensor:
    """An input in [0, 1] whose signed distance to the boundary is d."""
    x = torch.full(SHAPE, 0.5)
    return x + (d - net.margin(x.unsqueeze(0)).item()) * net.w.reshape(SHAPE)


@pytest.mark.parametrize("d", [0.1, 0.3, 0.6, 1.0, -0.5])
def test_certified_radius_of_a_linear_classifier_is_its_distance_to_the_boundary(d):
    model, net = linear()
    sigma, n, alpha = 0.5, 100_000, 0.001
    cert = certify(model, at_distance(net, d), sigma, n0=100, n=n, alpha=alpha, num_classes=2,
                   generator=torch.Generator().manual_seed(7))
    assert not cert.abstain and cert.pred == (0 if d > 0 else 1)
    p = norm.cdf(abs(d) / sigma)
    # what CERTIFY gives from the expected count, and its Monte-Carlo error
    expected = sigma * norm.ppf(lower_confidence_bound(round(n * p), n, alpha))
    se = sigma / norm.pdf(norm.ppf(p)) * math.sqrt(p * (1 - p) / n)
    assert abs(cert.radius - expected) < 4 * se, (cert, expected, se)
    assert cert.radius < abs(d)  # a lower bound (fails with probability below α)
    assert abs(d) - cert.radius < 0.03
    assert cert.count == cert.top_counts[0] and sum(cert.top_counts) == n


def test_on_the_boundary_certify_abstains():
    model, net = linear()
    cert = certify(model, at_distance(net, 0.0), 0.5, n0=100, n=10_000, alpha=0.001,
                   num_classes=2, generator=torch.Generator().manual_seed(0))
    assert cert.abstain and cert.pred == -1 and cert.radius == 0.0 and cert.p_lower <= 0.5


def test_the_lower_bound_holds_at_alpha_over_seeded_repetitions():
    """p_A lower bound above the true p_A in at most α of the runs (Clopper-Pearson is
    conservative, so somewhat fewer), over 500 runs with n = 100 at α = 0.1."""
    model, net = linear()
    sigma, d, alpha, runs = 0.5, 0.42, 0.1, 500
    x, p_true = at_distance(net, d), norm.cdf(d / sigma)
    over = sum(certify(model, x, sigma, n0=10, n=100, alpha=alpha, num_classes=2,
                       generator=generator_for(3, i, torch.device("cpu"))).p_lower > p_true
               for i in range(runs))
    # Binomial(500, ≤ 0.1): above 70 is 3 standard deviations out; none at all would mean a
    # bound far looser than Clopper-Pearson's
    assert 10 < over <= alpha * runs + 3 * math.sqrt(runs * alpha * (1 - alpha)), over


def test_predict_answers_rarely_on_the_boundary_and_correctly_away_from_it():
    model, net = linear()
    alpha, runs = 0.1, 300
    tie = at_distance(net, 0.0)
    answered = sum(predict(model, tie, 0.5, n=100, alpha=alpha, num_classes=2,
                           generator=generator_for(5, i, torch.device("cpu"))) != -1
                   for i in range(runs))
    assert answered <= alpha * runs + 3 * math.sqrt(runs * alpha * (1 - alpha)), answered
    far = at_distance(net, -0.8)
    assert all(predict(model, far, 0.5, n=100, alpha=0.001, num_classes=2,
                       generator=generator_for(5, i, torch.device("cpu"))) == 1
               for i in range(20))


def test_certify_costs_exactly_n0_plus_n_forward_passes_per_example():
    model, net = linear()
    x = torch.stack([at_distance(net, d) for d in (0.2, -0.4, 0.7)])
    result = certify_all(model, x, torch.tensor([0, 1, 0]), torch.arange(3), sigma=0.5,
                         n0=100, n=1000, alpha=0.001, num_classes=2, batch_size=300)
    assert net.rows == result.forward_passes == 3 * (100 + 1000)
    assert result.pred == [0, 1, 0]


def test_an_examples_certificate_does_not_depend_on_the_others():
    model, net = linear()
    x = torch.stack([at_distance(net, d) for d in (0.2, -0.4, 0.7)])
    kwargs = {"sigma": 0.5, "n0": 50, "n": 2000, "alpha": 0.001, "num_classes": 2, "seed": 4}
    whole = certify_all(model, x, torch.tensor([0, 1, 0]), torch.tensor([10, 11, 12]), **kwargs)
    alone = certify_all(model, x[2:], torch.tensor([0]), torch.tensor([12]),
                        batch_size=128, **kwargs)
    assert whole.radius[2] == alone.radius[0] and whole.count[2] == alone.count[0]


@pytest.mark.parametrize("change, field", [
    ({"sigma": 0}, "sigma"), ({"sigma": -0.1}, "sigma"), ({"n0": 0}, "n0"),
    ({"n": 0}, "n"), ({"n": 10**8}, "n"), ({"alpha": 0}, "alpha"), ({"alpha": 0.5}, "alpha"),
    ({"radii": [-1]}, "radii"), ({"batch_size": 0}, "batch_size"), ({"sigmas": 1}, "sigmas"),
])
def test_bad_certify_specs_name_the_field(change, field):
    from robustness.errors import SpecError
    from robustness.spec import parse_certify_spec

    spec = {"dataset": {"name": "digits"}, "sigma": 0.25, **change}
    with pytest.raises(SpecError, match=rf"^{field}\b"):
        parse_certify_spec(spec)


def test_certify_command_writes_the_report(digits_model, tmp_path, capsys):
    from robustness.cli import main
    from robustness.models import save_state_dict

    weights = tmp_path / "digits.safetensors"
    save_state_dict(digits_model.net, weights)
    spec = {"dataset": {"name": "digits", "n": 12}, "sigma": 0.25, "n0": 50, "n": 2000,
            "radii": [0, 0.25, 0.5], "seed": 1}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    out = tmp_path / "cert.json"
    code = main(["certify", "--spec", str(tmp_path / "spec.json"), "--model", str(weights),
                 "--architecture", "madry_mnist", "--num-classes", "10", "--out", str(out),
                 "--html", str(tmp_path / "cert.html"), "--device", "cpu", "-q"])
    assert code == 0
    report = json.loads(out.read_text())
    assert (tmp_path / "cert.html").read_text().count("data:image/svg+xml") == 1
    table = report["certified_accuracy"]
    assert [row["radius"] for row in table] == [0, 0.25, 0.5]
    assert all(a["accuracy"] >= b["accuracy"] for a, b in pairwise(table))
    ex = report["examples"]
    assert len(ex["pred"]) == len(ex["abstain"]) == len(ex["radius"]) == len(ex["p_lower"]) == 12
    right = [p == y and not a for p, y, a in zip(ex["pred"], ex["label"], ex["abstain"])]
    assert table[0]["accuracy"] == report["clean_accuracy"] == sum(right) / 12
    assert report["clean_accuracy"] >= 0.75  # the digits CNN is ~95% accurate without noise
    assert all((r > 0) == (not a) for r, a in zip(ex["radius"], ex["abstain"]))
    assert all(r <= 0.25 * norm.ppf(0.001 ** (1 / 2000)) + 1e-9 for r in ex["radius"])
    assert report["cost"]["forward_passes"] == 12 * (2050 + 2 * (2 * 20 * 16 + 1000))
    assert sum(c["n"] for c in report["per_class"]) == 12
    assert report["abstention_rate"] == sum(ex["abstain"]) / 12


def test_gaussian_training_makes_the_model_more_accurate_under_noise(digits):
    """`method: gaussian` trains on x + N(0, σ²I): at σ = 0.5 its digits CNN beats the same
    network trained without noise on noisy test digits (measured: 70.0% against 61.6%)."""
    from robustness.errors import SpecError
    from robustness.training import parse_training_spec, train_from_spec

    _, test = digits
    noise = 0.5 * torch.randn(test.x.shape, generator=torch.Generator().manual_seed(0))
    accuracy = {}
    for method, extra in (("standard", {}), ("gaussian", {"sigma": 0.5})):
        spec = parse_training_spec({"architecture": "madry_mnist", "dataset": {"name": "digits"},
                                    "method": method, "epochs": 15, "batch_size": 64,
                                    "seed": 0, "validation": {"n": 0}, **extra})
        model = train_from_spec(spec, device="cpu").model
        with torch.no_grad():
            accuracy[method] = float((model(test.x + noise).argmax(1) == test.y).float().mean())
    assert accuracy["gaussian"] >= accuracy["standard"] + 0.05, accuracy
    assert spec.resolved()["sigma"] == 0.5
    with pytest.raises(SpecError, match="^sigma: required"):
        parse_training_spec({"architecture": "madry_mnist", "dataset": {"name": "digits"},
                             "method": "gaussian", "epochs": 1})
    with pytest.raises(SpecError, match="^sigma: only used by method 'gaussian'"):
        parse_training_spec({"architecture": "madry_mnist", "dataset": {"name": "digits"},
                             "method": "pgd", "epsilon": 0.3, "sigma": 0.5, "epochs": 1})


def test_smoothadv_crosses_a_linear_boundary_exactly_when_it_is_within_the_radius():
    """The smoothed linear classifier's boundary is the base one's, so an L2 attack of radius
    0.5 flips the points closer than 0.5 to it (0.3, 0.45) and none farther (0.55, 0.8)."""
    from robustness.smoothing import attack_smoothed, smoothed_predictions

    model, net = linear()
    distances = [0.3, 0.45, 0.55, 0.8]
    x = torch.stack([at_distance(net, d) for d in distances])
    y = torch.zeros(len(distances), dtype=torch.int64)
    x_adv = attack_smoothed(model, x, y, sigma=0.25, radius=0.5, steps=20, draws=16,
                            generator=torch.Generator().manual_seed(0))
    assert ((x_adv - x).flatten(1).norm(dim=1) <= 0.5 + 1e-5).all()
    moved = net.margin(x_adv)
    assert torch.allclose(moved, torch.tensor(distances) - 0.5, atol=0.02), moved
    preds = smoothed_predictions(model, x_adv, sigma=0.25, n=4000, num_classes=2,
                                 batch_size=4000,
                                 generators=[generator_for(0, i, torch.device("cpu"))
                                             for i in range(4)])
    assert preds == [1, 1, 0, 0]


def test_the_attacked_accuracy_is_never_below_the_certified_one(digits_model):
    """On real digits: SmoothAdv lowers the smoothed classifier's accuracy, yet at every radius
    stays at or above the certified accuracy (a certificate the attack beat would be wrong)."""
    from robustness.certification import certify_dataset
    from robustness.data import load_dataset
    from robustness.spec import DatasetSpec, parse_certify_spec

    data = load_dataset(DatasetSpec(name="digits", split="test", n=60))
    spec = parse_certify_spec({"dataset": {"name": "digits", "n": 60}, "sigma": 0.25,
                               "n0": 50, "n": 4000, "radii": [0, 0.25, 0.5, 0.75],
                               "attack": {"steps": 10, "draws": 8, "n": 500}})
    report = certify_dataset(digits_model, data, spec, device="cpu")
    rows = report["attack"]["results"]
    assert [row["radius"] for row in rows] == [0.25, 0.5, 0.75]
    for row in rows:
        assert row["accuracy"] >= row["certified_accuracy"], rows
    assert rows[-1]["accuracy"] < report["clean_accuracy"] - 0.2, rows  # the attack bites
    per_example = 50 + 4000 + 3 * (2 * 10 * 8 + 500)
    assert report["cost"]["forward_passes"] == 60 * per_example
    assert len(report["examples"]["attack_pred"]) == 3



def test_the_certification_page_plots_both_bounds_and_escapes_user_strings(digits_model):
    """The report's plot: certified accuracy (solid) and attacked accuracy (dashed) against
    the radius; the alt text and the table give every point's figure."""
    import re

    from robustness.certification import certify_dataset
    from robustness.data import load_dataset
    from robustness.pages import render_certification_page
    from robustness.spec import DatasetSpec, parse_certify_spec

    data = load_dataset(DatasetSpec(name="digits", split="test", n=20))
    spec = parse_certify_spec({"dataset": {"name": "digits", "n": 20}, "sigma": 0.25,
                               "n0": 50, "n": 1000, "radii": [0, 0.25, 0.5],
                               "attack": {"steps": 5, "draws": 4, "n": 200}})
    report = certify_dataset(digits_model, data, spec, device="cpu",
                             model_extra={"name": "<img src=x onerror=alert(1)>"})
    memory = report["provenance"]["memory"]  # robustness.memory: the certification's peak
    assert memory["rss_peak_bytes"] >= max(memory["rss_start_bytes"], memory["rss_end_bytes"])
    page = render_certification_page(report)
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    # One plot; its alt text gives every point of both curves, which the table repeats.
    (alt,) = re.findall(r'<img src="data:image/svg\+xml;base64,[^"]+" alt="([^"]+)"', page)
    certified, attacked = alt.split("attacked (upper bound): ")
    for row in report["certified_accuracy"]:
        assert f"r={row['radius']:g} {100 * row['accuracy']:.1f}%" in certified
    for row in report["attack"]["results"]:
        assert f"r={row['radius']:g} {100 * row['accuracy']:.1f}%" in attacked
        assert row["accuracy"] >= row["certified_accuracy"]  # never below
        assert (f"<tr><td>{row['radius']:g}</td><td>{100 * row['certified_accuracy']:.1f}%"
                f"</td><td>{100 * row['accuracy']:.1f}%</td></tr>") in page
    assert f"<b>Smoothed classifier accuracy {100 * report['clean_accuracy']:.1f}%</b>" in page
    assert page.count("<th>certified at ") == 3
