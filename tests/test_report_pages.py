"""The report pages (robustness.pages) as HTML: what they show is checked against the report's
own figures, and every user string is text. tests/test_report_browser.py loads them in a real
Chromium."""

from __future__ import annotations

import base64
import json
import re
from html import unescape

import pytest

from robustness.cli import main as cli
from robustness.evaluation.examples import example_records, matching_records

HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">$x^2$'
LABELS = [f"{HOSTILE}{c}" if c == 3 else f"digit {c}" for c in range(10)]


def audit_digits(model, *, n=200, name=HOSTILE, gate=True, attacks=None):
    from robustness.data import load_dataset
    from robustness.evaluation import run_sweep
    from robustness.spec import parse_audit_spec

    body = {"dataset": {"name": "digits", "n": n},
            "attacks": attacks or [{"name": "fgsm"}, {"name": "pgd", "steps": 5},
                                   {"name": "deepfool", "steps": 10}],
            "epsilons": [0.0, 0.1, 0.2], "taus": [0.5, 0.9]}
    if gate:
        body["gate"] = [{"metric": "accuracy", "attack": "pgd", "epsilon": 0.2, "op": ">=",
                         "value": 0.99}]
    spec = parse_audit_spec(body)
    return run_sweep(model, load_dataset(spec.dataset), spec, device="cpu",
                     collect_adversarial=True,
                     model_info={"name": name, "architecture": "madry_mnist",
                                 "num_classes": 10, "labels": LABELS, "sha256": "ab" * 32})


@pytest.fixture(scope="module")
def audited(digits_model):
    from robustness.evaluation.export import adversarial_tensors

    result = audit_digits(digits_model)
    return result.report, adversarial_tensors(result, result.report)


def visible(page: str) -> str:
    """The page's text, tags dropped, spaces collapsed."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", page)))


def images_of(page: str) -> list[tuple[str, str]]:
    """(src, alt) of every <img>, in order."""
    return [(unescape(m.group(1)), unescape(m.group(2))) for m in
            re.finditer(r'<img src="([^"]*)" alt="([^"]*)">', page)]


def test_breaking_records_are_each_failure_once_at_its_smallest_epsilon(audited):
    report, _ = audited
    ex = report["examples"]
    labels, clean = ex["label"], ex["clean"]["pred"]
    kept = matching_records(report, misclassified=True, breaking=True)
    # Brute force: per (norm, example) the smallest ε any attack broke it at; clean errors
    # once, at ε = 0.
    expected = {}
    for col in ex["adversarial"]:
        for i, (p, y) in enumerate(zip(col["pred"], labels)):
            if p != y:
                key = (None if clean[i] != y or col["epsilon"] == 0 else col["norm"], i)
                expected[key] = min(expected.get(key, col["epsilon"]), col["epsilon"])
    got = {}
    for col, i in kept:
        key = (None if clean[i] != labels[i] or col["epsilon"] == 0 else col["norm"], i)
        assert key not in got, f"example {i} listed twice for {key[0]}"
        got[key] = col["epsilon"]
        rivals = [c["confidence"][i] for c in ex["adversarial"] if c["epsilon"] == col[
            "epsilon"] and c["pred"][i] != labels[i] and (key[0] is None or c["norm"] == key[0])]
        assert col["confidence"][i] == max(rivals)
    assert got == expected and len(got) > 20
    items, total = example_records(report, misclassified=True, breaking=True,
                                   order="confidence", limit=len(kept))
    assert total == len(kept)
    confidences = [r["confidence"] for r in items]
    assert confidences == sorted(confidences, reverse=True)
    assert all(r["misclassified"] and len(r["topk"]) == 5 == len(r["clean_topk"])
               for r in items)


def test_the_audit_page_shows_the_figures_gallery_and_verdict(audited):
    from robustness.pages import render_audit_page
    from robustness.pages.gallery import GALLERY_FILTERS, TensorImages

    report, tensors = audited
    page = render_audit_page(report, TensorImages(tensors), gallery_size=6)
    text = visible(page)
    # The verdict in words, not only in colour: the gate failed (PGD accuracy at 0.2 < 99%).
    assert "✘ FAIL" in text and "1 rule(s) failed" in text
    for r in report["results"]:
        assert f"{100 * r['accuracy']:.1f}%" in text
    assert f"Clean accuracy {100 * report['clean']['accuracy']:.1f}%" in text
    # Plots: accuracy, top-1/top-5 error, confidence, per class, confusion, minimal norms.
    pictures = images_of(page)
    plots = [p for p in pictures if p[0].startswith("data:image/svg+xml;base64,")]
    assert len(plots) == 6
    assert all(alt.strip() for _, alt in pictures)
    worst = {(w["norm"], w["epsilon"]): w["accuracy"] for w in report["worst_case"]}
    assert f"L∞ ε=0.2: {100 * worst[('linf', 0.2)]:.1f}%" in plots[0][1]
    # Gallery: the six most confidently wrong breaking records, each with three images.
    items, total = example_records(report, limit=6, **GALLERY_FILTERS)
    clean_errors = sum(p != y for p, y in zip(report["examples"]["clean"]["pred"],
                                              report["examples"]["label"]))
    assert f"Shown: 1–6 of {total} (not shown: the {clean_errors} examples already wrong" in text
    # Adversarial failures only: right on the clean input, wrong at a breaking ε above 0.
    assert clean_errors and all(r["clean_pred"] == r["label"] != r["pred"] and r["epsilon"] > 0
                                for r in items)
    gallery = [p for p in pictures if p[0].startswith("data:image/png;base64,")]
    assert len(gallery) == 3 * len(items) == 18
    for item, (clean, adv, delta) in zip(items, zip(*[iter(gallery)] * 3)):
        assert f"example {item['index']}" in clean[1] and f"example {item['index']}" in adv[1]
        assert "amplified" in delta[1]
        assert f"#{item['index']}" in text
        assert f"{100 * item['confidence']:.1f}%" in text
        assert base64.b64decode(clean[0].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    # Top-5 before and after, the true class marked in words.
    assert text.count("(true)") >= 2 * len(items)
    # Provenance folded away.
    assert re.search(r"<details><summary>Provenance and resolved hyperparameters</summary>",
                     page)
    assert "&#34;seconds&#34;" in page


def test_hostile_strings_render_as_text(audited):
    from robustness.pages import render_audit_page
    from robustness.pages.gallery import TensorImages

    report, tensors = audited
    report = json.loads(json.dumps(report))
    report["model"]["architecture"] = report["dataset"]["name"] = HOSTILE
    report["model"]["preprocessing"] = {"mean": [HOSTILE], "std": [1]}
    page = render_audit_page(report, TensorImages(tensors))
    assert "<script" not in page.lower() and "<img src=x" not in page
    assert page.count("&lt;script&gt;window.__pwned=1&lt;/script&gt;") >= 5
    # Only data: images; no external asset of any kind.
    assert not re.search(r'(src|href)="(?!data:|#)', page)
    assert "<link" not in page and "@import" not in page and "url(" not in page


def test_the_comparison_page_shows_both_and_the_flips(digits_model, tmp_path):
    from robustness.evaluation.compare import compare_reports
    from robustness.pages import render_comparison_page

    attacks = [{"name": "fgsm"}, {"name": "pgd", "steps": 5}]
    a = audit_digits(digits_model, attacks=attacks, gate=False).report
    # B: the same model behind a coarser input (quantized to 4 levels): other flips.
    import torch

    class Coarse(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.metadata = inner.metadata

        def forward(self, x):
            return self.inner(torch.round(x * 3) / 3)

    b = audit_digits(Coarse(digits_model), attacks=attacks, gate=False, name="coarse").report
    cmp = compare_reports(a, b)
    page = render_comparison_page([("aud_a", a), ("aud_b", b)])
    text = visible(page)
    assert cmp["verdict"].upper() in text
    for r in cmp["results"]:
        cells = [r["attack"], "L∞", f"{r['epsilon']:g}", f"{100 * r['a']:.1f}%",
                 f"{100 * r['b']:.1f}%", f"{100 * r['delta']:+.1f} pp"]
        row = re.search(r"\s+".join(map(re.escape, cells)) + r"[^0-9]*(\d+)\s+(\d+)", text)
        assert row, r
        assert (int(row[1]), int(row[2])) == (len(r["broken_in_b"]), len(r["fixed_in_b"]))
    assert sum(len(r["broken_in_b"]) + len(r["fixed_in_b"]) for r in cmp["results"]) > 0
    assert len(images_of(page)) == 2 and "<script" not in page.lower()
    # On the command line: several reports are compared; a regression exits 1.
    for name, report in (("a.json", a), ("b.json", b)):
        (tmp_path / name).write_text(json.dumps(report))
    code = cli(["report", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--html",
                str(tmp_path / "cmp.html"), "-q"])
    assert code == (1 if cmp["verdict"] == "regressed" else 0)
    assert (tmp_path / "cmp.html").read_text().count("<img") == 2
    other = audit_digits(digits_model, attacks=attacks, gate=False, n=50).report
    (tmp_path / "c.json").write_text(json.dumps(other))
    assert cli(["report", str(tmp_path / "a.json"), str(tmp_path / "c.json"), "-q"]) == 2


# Measured (tests/test_training.py AFTER_RAMP): FGSM-AT at ε=0.4 ramped over 2 epochs, seed 3.
AFTER_RAMP = [(0.973, 0.644, 0.006), (0.968, 0.859, 0.678), (0.921, 0.911, 0.0),
              (0.917, 0.0, 0.0), (0.953, 0.952, 0.0), (0.956, 0.956, 0.0)]


def test_the_training_page_marks_catastrophic_overfitting():
    from robustness.pages import render_training_page
    from robustness.training.monitor import detect_collapse

    history, collapse = [], None
    for epoch, (c, f, p) in enumerate(AFTER_RAMP, start=1):
        history.append({"phase": "fgsm", "epoch": epoch, "loss": 1.0 / epoch,
                        "clean_accuracy": c, "fgsm_accuracy": f, "pgd_accuracy": p,
                        "train_seconds": 1.0, "monitor_seconds": 0.5})
        collapse = collapse or detect_collapse(history, 0.5, 0.5)
        history[-1]["catastrophic_overfitting"] = collapse is not None
    assert collapse is not None
    card = {"metadata": {"name": "wong <b>fgsm</b>", "architecture": "wong_mnist"},
            "training": {"method": "fgsm", "spec": {"method": "fgsm", "epsilon": 0.4},
                         "history": history, "catastrophic_overfitting": collapse,
                         "checkpoint": "best", "selected_epoch": 2, "epochs_run": 6}}
    page = render_training_page(card)
    text = visible(page)
    assert f"Catastrophic overfitting at epoch {collapse['epoch']}" in text
    (plot,) = images_of(page)
    assert f"catastrophic overfitting (epoch {collapse['epoch']})" in plot[1]
    assert "selected checkpoint (epoch 2)" in plot[1]
    rows = re.findall(r"<tr><td>(\d+)</td>.*?</tr>", page)
    assert rows == [str(e) for e in range(1, 7)]
    assert text.count("⚠ catastrophic overfitting") == sum(
        h["catastrophic_overfitting"] for h in history)
    assert "&lt;b&gt;fgsm&lt;/b&gt;" in page


def test_cli_train_and_report_write_the_pages(tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"architecture": "madry_mnist", "dataset": {"name": "digits",
                                "n": 400}, "epochs": 2, "batch_size": 64, "seed": 0,
                                "method": "fgsm", "epsilon": 0.2, "name": "digits-fgsm",
                                "validation": {"n": 100, "steps": 3}}))
    out = tmp_path / "model"
    assert cli(["train", "--spec", str(spec), "--out", str(out), "--html",
                str(tmp_path / "train.html"), "-q"]) == 0
    card = json.loads((out / "model.json").read_text())
    page = (tmp_path / "train.html").read_text()
    for h in card["training"]["history"]:
        assert f"{100 * h['pgd_accuracy']:.1f}%" in page
    assert cli(["report", str(out / "model.json"), "--html", str(tmp_path / "t2.html"),
                "-q"]) == 0
    assert (tmp_path / "t2.html").read_text() == page
    # An audit of the model names its recipe on the page; --html collects the gallery's images.
    audit = tmp_path / "audit.json"
    audit.write_text(json.dumps({"dataset": {"name": "digits", "n": 60},
                                 "attacks": [{"name": "fgsm"}], "epsilons": [0.0, 0.3]}))
    code = cli(["audit", "--spec", str(audit), "--model", str(out / "model.safetensors"),
                "--out", str(tmp_path / "r.json"), "--html", str(tmp_path / "a.html"), "-q"])
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["model"]["training"]["method"] == "fgsm"
    assert report["model"]["training"]["epsilon"] == 0.2
    page = (tmp_path / "a.html").read_text()
    assert "trained by this service: fgsm, ε=0.2" in page
    assert page.count("data:image/png") >= 3
    assert cli(["report", str(tmp_path / "r.json"), "--html", str(tmp_path / "b.html"),
                "-q"]) == code
    # Without the adversarial set the page says why the gallery has no images.
    assert "were not stored with this report" in (tmp_path / "b.html").read_text()
