"""Doing less work for the same figures: PGD's breaking-ε search against attacking every ε,
FGSM's one-gradient grid, early stopping and per-example ε in the one PGD loop."""

from types import SimpleNamespace

import pytest
import torch

from robustness.attacks import LinfBall, pgd
from robustness.attacks.fgsm import fgsm, fgsm_grid
from robustness.evaluation import run_sweep
from robustness.evaluation.passes import PassCounter
from robustness.spec import parse_audit_spec

GRID = [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3]


def _data(digits, n):
    _, test = digits
    return SimpleNamespace(x=test.x[:n], y=test.y[:n], indices=test.indices[:n],
                           description={"name": "digits", "split": "test", "n": n})


@pytest.fixture(scope="module")
def both(digits_model, digits):
    """One audit with the search (the default) and one attacking every ε, same examples."""
    data = _data(digits, 300)
    out = {}
    for search in (True, False):
        spec = parse_audit_spec({"dataset": {"name": "digits", "n": 300}, "epsilons": GRID,
                                 "attacks": [{"name": "pgd", "steps": 20, "search": search}],
                                 "batch_size": 150, "seed": 0})
        out[search] = run_sweep(digits_model, data, spec, device="cpu",
                                collect_adversarial=True)
    return data, out


def test_the_search_is_as_strong_as_every_eps_for_a_fraction_of_the_passes(both,
                                                                            digits_model):
    data, out = both
    fast, full = (out[s].report for s in (True, False))
    acc = {s: [r["accuracy"] for r in out[s].report["results"]] for s in (True, False)}
    # The curve falls from clean accuracy to near zero, so every ε decides something.
    assert acc[False][0] > 0.9 and acc[False][-1] < 0.2 and acc[False][3] > 0.2
    # Each ε: no more than 2% (6 examples) above attacking that ε, whose random starts differ.
    for a, b in zip(acc[True], acc[False]):
        assert a <= b + 0.02
    assert sum(acc[True]) <= sum(acc[False]) + 0.02
    # What it spent: well under half the passes (both counted the same way, records and
    # checks' forwards aside).
    assert fast["provenance"]["passes_per_example"] < \
        0.5 * full["provenance"]["passes_per_example"]
    assert fast["provenance"]["attacks"][0]["refine_steps"] == 3
    # Every reported point is a real one: inside its ball and the box, and its record is
    # the model's own prediction there.
    for (label, eps), x_adv in out[True].adversarial.items():
        assert float((x_adv - data.x).abs().max()) <= eps + 1e-6
        assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
    cols = next(c for c in fast["examples"]["adversarial"] if c["epsilon"] == 0.2)
    with torch.no_grad():
        pred = digits_model(out[True].adversarial[("pgd", 0.2)]).argmax(1)
    assert pred.tolist() == cols["pred"]


def test_the_search_keeps_the_failures_confident(both):
    """Above an example's breaking ε its adversarial is pushed on, so the confidence of the
    errors stays near that of a full attack at that ε (docs/report.md says which point)."""
    _, out = both
    for r_fast, r_full in zip(out[True].report["results"], out[False].report["results"]):
        if r_full["epsilon"] >= 0.2:
            assert r_fast["mean_confidence_on_errors"] >= \
                r_full["mean_confidence_on_errors"] - 0.1


def test_fgsm_over_a_grid_is_one_gradient_and_equals_fgsm_at_each_eps(digits_model, digits):
    data = _data(digits, 100)
    counted = PassCounter(digits_model)
    grid = fgsm_grid(counted, data.x, data.y, "linf", GRID[1:])
    assert counted.passes == pytest.approx(100 * (1 + len(GRID[1:]) / 3 + 1 / 3))
    for eps, x_adv in zip(GRID[1:], grid):
        assert torch.equal(x_adv, fgsm(digits_model, data.x, data.y, LinfBall(eps)))


def test_pgd_stops_broken_examples_early_and_takes_an_eps_per_example(digits_model, digits):
    data = _data(digits, 200)
    x, y = data.x, data.y
    eps = torch.where(torch.arange(200) % 2 == 0, 0.05, 0.3)
    full, early = PassCounter(digits_model), PassCounter(digits_model)
    a = pgd(full, x, y, LinfBall(eps), steps=20, step_size=2.5 * eps / 20,
            generator=torch.Generator().manual_seed(0))
    b = pgd(early, x, y, LinfBall(eps), steps=20, step_size=2.5 * eps / 20,
            generator=torch.Generator().manual_seed(0), until_broken=True)
    # Each row inside its own ball.
    for adv in (a, b):
        assert bool(((adv - x).abs().flatten(1).amax(1) <= eps + 1e-6).all())
    with torch.no_grad():
        wrong_a = digits_model(a).argmax(1) != y
        wrong_b = digits_model(b).argmax(1) != y
    # The same random starts and steps up to each break: the same examples broken...
    assert torch.equal(wrong_a, wrong_b)
    # ...the larger balls break more, and stopping them early saves the passes.
    assert wrong_a[1::2].float().mean() > wrong_a[0::2].float().mean() + 0.3
    assert early.passes < 0.8 * full.passes


def test_a_cascade_searches_down_from_the_largest_eps(digits_model, digits):
    """The cascade's search: the robust examples cost one cascade (at the largest ε), the
    others are settled by a PGD that stops at the first break and a cascade just below it;
    the figures are the ε-by-ε cascade's, the stages still add up to them."""
    data = _data(digits, 200)
    reports = {}
    for search in (True, False):
        spec = parse_audit_spec({"dataset": {"name": "digits", "n": 200},
                                 "epsilons": [0.0, 0.05, 0.1, 0.15, 0.2, 0.3],
                                 "attacks": [{"name": "cascade", "preset": "quick",
                                              "search": search}],
                                 "batch_size": 100, "seed": 0})
        reports[search] = run_sweep(digits_model, data, spec, device="cpu").report
    fast, full = reports[True], reports[False]
    acc = {s: [r["accuracy"] for r in reports[s]["results"]] for s in (True, False)}
    assert acc[False][1] > 0.7 and acc[False][3] > 0.1 and acc[False][-1] < 0.05
    for a, b in zip(acc[True], acc[False]):  # 3 examples either way: random starts differ
        assert abs(a - b) <= 0.015
    assert fast["provenance"]["passes_per_example"] < \
        0.75 * full["provenance"]["passes_per_example"]
    for r_fast, r_full in zip(fast["results"], full["results"]):
        assert r_fast["mean_confidence_on_errors"] >= \
            r_full["mean_confidence_on_errors"] - 0.1
        after = [s["accuracy"] for s in r_fast["stages"]]
        assert after == sorted(after, reverse=True) and after[-1] == r_fast["accuracy"]
