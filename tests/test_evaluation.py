"""The ε-sweep report on a real model: figures recomputed from the per-example columns, the
contract's keys, monotone accuracy in ε, the gate and the adversarial export."""

import json
import math

import pytest
import torch

from robustness.evaluation import run_sweep
from robustness.evaluation.export import save_adversarial
from robustness.spec import parse_audit_spec

SPEC = {
    "dataset": {"name": "digits", "split": "test", "n": 200},
    "attacks": [{"name": "fgsm"}, {"name": "pgd", "steps": 10},
                {"name": "pgd", "norm": "l2", "steps": 10, "epsilons": [0.0, 0.5, 1.0]},
                {"name": "cw", "steps": 50, "binary_search_steps": 3,
                 "epsilons": [0.0, 0.5, 1.0]}],
    "epsilons": [0.0, 0.05, 0.1, 0.2], "top_k": 3, "seed": 0, "batch_size": 64,
    "gate": [{"metric": "accuracy", "attack": "pgd_linf", "epsilon": 0.2, "op": ">=",
              "value": 0.5},
             {"metric": "accuracy", "attack": "clean", "op": ">=", "value": 0.5}],
}


@pytest.fixture(scope="module")
def audited(digits_model, digits):
    _, test = digits
    from types import SimpleNamespace
    spec = parse_audit_spec(SPEC)
    data = SimpleNamespace(x=test.x[:200], y=test.y[:200], indices=test.indices[:200],
                           description={"name": "digits", "split": "test", "n": 200})
    progress = []
    result = run_sweep(digits_model, data, spec, device="cpu", collect_adversarial=True,
                       progress=lambda d, t, p: progress.append((d, t, p)))
    return spec, data, result, progress


def test_report_has_the_contract_keys_and_is_json(audited):
    _, data, result, _ = audited
    report = json.loads(json.dumps(result.report))
    assert report["schema_version"] == 1
    for key in ("model", "dataset", "spec", "clean", "results", "examples", "provenance"):
        assert key in report
    assert set(report["clean"]) >= {"accuracy", "top5_accuracy", "mean_confidence"}
    row = report["results"][0]
    assert set(row) >= {"attack", "norm", "epsilon", "accuracy", "top5_accuracy",
                        "attack_success_rate", "mean_confidence_on_errors", "silent_error_rate"}
    assert set(row["silent_error_rate"]) == {"0.5", "0.9"}
    ex = report["examples"]
    assert ex["index"] == data.indices.tolist() and ex["label"] == data.y.tolist()
    assert len(ex["clean"]["topk"][0]) == 3
    adv = ex["adversarial"][0]
    assert set(adv) >= {"attack", "epsilon", "pred", "confidence", "true_class_prob", "linf",
                        "l2", "topk", "topk_confidence"}
    prov = report["provenance"]
    assert prov["device"] == "cpu" and prov["seed"] == 0 and prov["seconds"] > 0
    assert prov["versions"]["torch"] == torch.__version__
    pgd = next(a for a in prov["attacks"] if a["label"] == "pgd_linf")
    assert pgd["steps"] == 10 and pgd["step_size"]["0.1"] == pytest.approx(0.025)


def test_aggregates_match_the_per_example_columns(audited):
    _, _, result, _ = audited
    report = result.report
    y = torch.tensor(report["examples"]["label"])
    clean_pred = torch.tensor(report["examples"]["clean"]["pred"])
    clean_ok = clean_pred == y
    assert report["clean"]["accuracy"] == pytest.approx(float(clean_ok.float().mean()))
    assert report["clean"]["accuracy"] > 0.85
    for row, cols in zip(report["results"], report["examples"]["adversarial"]):
        assert (row["label"], row["epsilon"]) == (cols["label"], cols["epsilon"])
        pred, conf = torch.tensor(cols["pred"]), torch.tensor(cols["confidence"])
        wrong = pred != y
        assert row["accuracy"] == pytest.approx(float((~wrong).float().mean()))
        assert row["attack_success_rate"] == pytest.approx(float(wrong[clean_ok].float().mean()))
        if wrong.any():
            assert row["mean_confidence_on_errors"] == pytest.approx(float(conf[wrong].mean()))
        for tau, rate in row["silent_error_rate"].items():
            assert rate == pytest.approx(float((wrong & (conf >= float(tau))).float().mean()))
        # Perturbations respect ε in the attack's norm; confidences are probabilities.
        size = torch.tensor(cols["linf"] if row["norm"] == "linf" else cols["l2"])
        assert (size <= row["epsilon"] + 1e-5).all()
        assert ((conf > 0) & (conf <= 1)).all()
        top = torch.tensor(cols["topk"])
        assert torch.equal(top[:, 0], pred)


def test_accuracy_never_rises_with_eps_and_broken_at_agrees(audited):
    spec, _, result, _ = audited
    report = result.report
    y = report["examples"]["label"]
    for label in spec.attack_labels():
        rows = [r for r in report["results"] if r["label"] == label]
        accs = [r["accuracy"] for r in sorted(rows, key=lambda r: r["epsilon"])]
        assert accs == sorted(accs, reverse=True), (label, accs)
        broken = report["examples"]["broken_at"][label]
        for cols in (c for c in report["examples"]["adversarial"] if c["label"] == label):
            for i, (p, t) in enumerate(zip(cols["pred"], y)):
                if p != t:
                    assert broken[i] is not None and broken[i] <= cols["epsilon"]
    # PGD is never weaker than FGSM at the same ε on this model.
    for eps in (0.05, 0.1, 0.2):
        acc = {r["label"]: r["accuracy"] for r in report["results"] if r["epsilon"] == eps}
        assert acc["pgd_linf"] <= acc["fgsm"]
    worst = {(w["norm"], w["epsilon"]): w["accuracy"] for w in report["worst_case"]}
    assert worst[("linf", 0.1)] <= min(acc_ for r in report["results"]
                                       if r["epsilon"] == 0.1 and r["norm"] == "linf"
                                       for acc_ in [r["accuracy"]])


def test_minimal_norms_and_gate(audited):
    _, _, result, _ = audited
    report = result.report
    (cw,) = report["minimal_perturbation"]
    assert cw["label"] == "cw" and cw["success_rate"] > 0.9
    norms = [v for v in report["examples"]["minimal_norm"]["cw"] if v]
    assert cw["median_norm"] == pytest.approx(sorted(norms)[len(norms) // 2], rel=0.2)
    cw_rows = {r["epsilon"]: r for r in report["results"] if r["label"] == "cw"}
    found = report["examples"]["minimal_norm"]["cw"]
    y = report["examples"]["label"]
    clean = report["examples"]["clean"]["pred"]
    expected = sum(1 for f, c, t in zip(found, clean, y) if c == t and (f is None or f > 0.5))
    assert cw_rows[0.5]["accuracy"] == pytest.approx(expected / len(y))
    gate = report["gate"]
    assert gate["passed"] is False
    assert [f["attack"] for f in gate["failed"]] == ["pgd_linf"]
    assert gate["failed"][0]["actual"] < 0.5


def test_progress_reports_every_unit(audited):
    _, _, _, progress = audited
    batches = math.ceil(200 / 64)
    units = batches * (4 + 4 + 3 + 1)
    assert [d for d, _, _ in progress] == list(range(1, units + 1))
    assert all(t == units for _, t, _ in progress)


def test_exported_adversarials_reproduce_the_report(audited, digits_model, tmp_path):
    from safetensors.torch import load_file

    _, data, result, _ = audited
    path = save_adversarial(result, result.report, tmp_path / "adv.safetensors")
    tensors = load_file(str(path))
    x_adv = tensors["x_adv/pgd_linf/0.1"]
    cols = next(c for c in result.report["examples"]["adversarial"]
                if c["label"] == "pgd_linf" and c["epsilon"] == 0.1)
    assert (x_adv - data.x).abs().amax() <= 0.1 + 1e-6
    probs = torch.softmax(digits_model(x_adv), 1)
    assert torch.allclose(probs.max(1).values, torch.tensor(cols["confidence"]), atol=1e-5)
    np_path = save_adversarial(result, result.report, tmp_path / "adv.npz")
    import numpy as np
    assert np.load(np_path)["x_adv/cw/0.5"].shape == tuple(data.x.shape)


def test_l2_radius_beyond_the_input_box_is_rejected(digits_model, digits):
    from types import SimpleNamespace

    from robustness.errors import SpecError

    _, test = digits
    spec = parse_audit_spec({"dataset": {"name": "digits"},
                             "attacks": [{"name": "pgd", "norm": "l2", "epsilons": [9.0]}]})
    data = SimpleNamespace(x=test.x[:4], y=test.y[:4], indices=test.indices[:4], description={})
    with pytest.raises(SpecError, match=r"attacks\[0\].epsilons: L2 ε=9.0 exceeds .* \(8\)"):
        run_sweep(digits_model, data, spec, device="cpu")


def test_an_attacks_batch_size_bounds_its_calls_and_keeps_its_figures(digits_model, digits):
    """`attacks[i].batch_size` splits the audit's batch for that attack alone: every forward
    pass of the attack sees at most that many examples, and a deterministic attack's figures
    are those of the unsplit run."""
    _, test = digits
    from types import SimpleNamespace

    seen: list[int] = []

    class Recording(torch.nn.Module):
        def forward(self, x):
            if torch.is_grad_enabled():  # the attacks' passes (the audit's own are no_grad)
                seen.append(len(x))
            return digits_model(x)

    data = SimpleNamespace(x=test.x[:90], y=test.y[:90], indices=test.indices[:90],
                           description={"name": "digits"})
    body = {"dataset": {"name": "digits", "n": 90}, "epsilons": [0.0, 0.1], "batch_size": 90,
            "attacks": [{"name": "fgsm"}, {"name": "deepfool", "steps": 5}]}
    whole = run_sweep(Recording(), data, parse_audit_spec(body), device="cpu").report
    assert max(seen) == 90
    seen.clear()
    body["attacks"] = [{"name": "fgsm", "batch_size": 16},
                       {"name": "deepfool", "steps": 5, "batch_size": 25}]
    split = run_sweep(Recording(), data, parse_audit_spec(body), device="cpu").report
    # The attacks' passes take their chunks (90 = 5×16 + 10 and 3×25 + 15; DeepFool then
    # iterates on the rows of a chunk it has not fooled yet); the validity checks' gradient
    # probe takes its whole sample of 90.
    assert {16, 10, 25}.issubset(seen) and all(s == 90 or s <= 25 for s in seen)
    assert [r["accuracy"] for r in split["results"]] == \
        [r["accuracy"] for r in whole["results"]]
    # DeepFool's sizes agree up to float noise (batched convolutions sum in another order).
    for a, b in zip(split["examples"]["minimal_norm"]["deepfool"],
                    whole["examples"]["minimal_norm"]["deepfool"]):
        assert (a is None) == (b is None) and (a is None or math.isclose(a, b, rel_tol=1e-4))


def test_peak_memory_catches_a_transient_allocation_and_goes_in_the_provenance(digits_model):
    """The OS keeps only a lifetime peak: a 200 MB tensor made and freed inside the window is
    seen by the sampler, and the resident set falls back once it is freed."""
    import time

    from robustness.data import load_dataset
    from robustness.evaluation import run_sweep
    from robustness.memory import PeakMemory
    from robustness.spec import parse_audit_spec

    with PeakMemory() as memory:
        big = torch.ones(50_000_000)  # 200 MB
        time.sleep(0.1)
        del big
    f = memory.figures()
    assert f["rss_peak_bytes"] - f["rss_start_bytes"] >= 150_000_000
    assert f["rss_end_bytes"] - f["rss_start_bytes"] < 50_000_000
    assert f["cuda_peak_allocated_bytes"] is None
    spec = parse_audit_spec({"dataset": {"name": "digits", "n": 50},
                             "attacks": [{"name": "fgsm"}], "epsilons": [0.1]})
    report = run_sweep(digits_model, load_dataset(spec.dataset), spec, device="cpu").report
    m = report["provenance"]["memory"]
    assert m["rss_peak_bytes"] >= max(m["rss_start_bytes"], m["rss_end_bytes"]) > 100_000_000
