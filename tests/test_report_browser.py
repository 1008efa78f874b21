"""The report pages in a real headless Chromium (Debian's chromium, installed by `make test`;
driven with Playwright): they load with no console error and no request for anything outside
the file, every plot and gallery image is decoded and on screen, and hostile strings are text.

Skipped where no Chromium is installed, except where ROBUSTNESS_TEST_REQUIRE_BROWSER is set
(CI), where that fails instead."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import torch
from test_report_pages import HOSTILE, audit_digits

# As root, on a machine with no network: no sandbox, and nothing that phones home.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def chromium_path() -> str | None:
    return (os.environ.get("ROBUSTNESS_TEST_CHROMIUM") or shutil.which("chromium")
            or shutil.which("chromium-browser"))


@pytest.fixture(scope="module")
def browser():
    path = chromium_path()
    if path is None:
        if os.environ.get("ROBUSTNESS_TEST_REQUIRE_BROWSER"):
            pytest.fail("no chromium found (make test installs Debian's chromium)")
        pytest.skip("no chromium installed (make test installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Loaded:
    """A page opened from a file, with what went wrong while it loaded."""

    def __init__(self, browser, path: Path):
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}")
                     if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("request", lambda r: None if r.url.startswith(("data:", "file:"))
                     else self.requests.append(r.url))
        started = time.perf_counter()
        self.page.goto(path.resolve().as_uri(), wait_until="load")
        self.seconds = time.perf_counter() - started

    def images(self) -> list[dict]:
        """Every <img>: decoded size, alt text and whether it is laid out on the page."""
        return self.page.evaluate("""() => [...document.images].map(img => {
            const box = img.getBoundingClientRect();
            return {complete: img.complete, width: img.naturalWidth, alt: img.alt,
                    shown: box.width > 0 && box.height > 0 &&
                           getComputedStyle(img).visibility !== 'hidden',
                    gallery: !!img.closest('.gallery')};
        })""")

    def check(self, screenshot: Path) -> list[dict]:
        assert self.errors == [], self.errors
        assert self.requests == [], f"requests outside the file: {self.requests}"
        images = self.images()
        for img in images:
            assert img["complete"] and img["width"] > 0, img["alt"]
            assert img["shown"] and img["alt"].strip(), img
        self.page.screenshot(path=str(screenshot), full_page=True)
        keep = os.environ.get("ROBUSTNESS_TEST_SCREENSHOTS")
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(screenshot, Path(keep) / screenshot.name)
        return images


def test_the_audit_page_in_chromium(browser, digits_model, tmp_path):
    from robustness.evaluation.export import adversarial_tensors
    from robustness.pages import render_audit_page
    from robustness.pages.gallery import TensorImages

    result = audit_digits(digits_model)
    path = tmp_path / "audit.html"
    path.write_text(render_audit_page(result.report,
                                      TensorImages(adversarial_tensors(result, result.report))))
    loaded = Loaded(browser, path)
    images = loaded.check(tmp_path / "audit.png")
    assert sum(not i["gallery"] for i in images) == 6
    assert sum(i["gallery"] for i in images) == 3 * 24
    page = loaded.page
    # Hostile strings are text: nothing ran, the heading reads them back literally.
    assert page.evaluate("window.__pwned") is None
    assert page.inner_text("h1") == f"Robustness report: {HOSTILE}"
    # The verdict carries words, not only a colour.
    verdict = page.inner_text("section.verdict")
    assert "FAIL" in verdict and "Gate" in verdict
    # The provenance is folded away until opened.
    assert not page.is_visible("details pre")
    page.click("details summary")
    assert page.is_visible("details pre")


def test_the_comparison_and_training_pages_in_chromium(browser, digits_model, tmp_path):
    from test_report_pages import AFTER_RAMP

    from robustness.pages import render_comparison_page, render_training_page

    attacks = [{"name": "fgsm"}, {"name": "pgd", "steps": 5}]
    a = audit_digits(digits_model, attacks=attacks, gate=False).report
    b = audit_digits(digits_model, attacks=[{"name": "fgsm"}], gate=False, name="b").report
    path = tmp_path / "compare.html"
    path.write_text(render_comparison_page([("a", a), ("b", b)]))
    assert len(Loaded(browser, path).check(tmp_path / "compare.png")) == 2
    history = [{"phase": "fgsm", "epoch": e, "loss": 1 / e, "clean_accuracy": c,
                "fgsm_accuracy": f, "pgd_accuracy": p, "catastrophic_overfitting": e >= 3}
               for e, (c, f, p) in enumerate(AFTER_RAMP, start=1)]
    card = {"metadata": {"name": HOSTILE}, "training": {
        "method": "fgsm", "history": history, "spec": {"epsilon": 0.4},
        "catastrophic_overfitting": {"epoch": 3, "pgd_accuracy": 0.0, "best_epoch": 2,
                                     "best_pgd_accuracy": 0.678}}}
    path = tmp_path / "training.html"
    path.write_text(render_training_page(card))
    loaded = Loaded(browser, path)
    assert len(loaded.check(tmp_path / "training.png")) == 1
    assert loaded.page.evaluate("window.__pwned") is None
    assert "Catastrophic overfitting" in loaded.page.inner_text("section.verdict")


@pytest.mark.mnist
def test_a_10000_example_audit_page_stays_small(browser, data_root, tmp_path):
    """The full MNIST test set through a small LeNet: the page (24 gallery examples, every
    plot) is under 5 MB. Its load time is printed, not asserted (docs/benchmarks.md)."""
    from robustness.data import load_dataset
    from robustness.evaluation import run_sweep
    from robustness.evaluation.export import adversarial_tensors
    from robustness.models import Classifier, ModelMetadata, build_model
    from robustness.pages import render_audit_page
    from robustness.pages.gallery import TensorImages
    from robustness.spec import DatasetSpec, parse_audit_spec
    from robustness.training import fit

    train = load_dataset(DatasetSpec(name="mnist", split="train", n=3000), data_root)
    torch.manual_seed(0)
    net = fit(build_model("lenet_mnist", 10, (1, 28, 28)), train.x, train.y, epochs=2,
              batch_size=128, lr=2e-3, seed=0)
    model = Classifier(net, metadata=ModelMetadata(architecture="lenet_mnist", num_classes=10,
                                                   input_shape=[1, 28, 28])).eval()
    spec = parse_audit_spec({"dataset": {"name": "mnist", "n": 10000},
                             "attacks": [{"name": "fgsm"}, {"name": "pgd", "steps": 2},
                                         {"name": "deepfool", "steps": 3}],
                             "epsilons": [0.0, 0.1, 0.2, 0.3], "batch_size": 1000})
    result = run_sweep(model, load_dataset(spec.dataset, data_root), spec, device="cpu",
                       collect_adversarial=True,
                       model_info={"name": "lenet-10k", "architecture": "lenet_mnist",
                                   "num_classes": 10})
    report = result.report
    assert len(report["examples"]["index"]) == 10000
    started = time.perf_counter()
    html = render_audit_page(report, TensorImages(adversarial_tensors(result, report)))
    render_seconds = time.perf_counter() - started
    path = tmp_path / "audit-10k.html"
    path.write_text(html)
    size = path.stat().st_size
    assert size < 5_000_000, f"{size / 1e6:.2f} MB"
    loaded = Loaded(browser, path)
    images = loaded.check(tmp_path / "audit-10k.png")
    assert sum(i["gallery"] for i in images) == 3 * 24
    print(json.dumps({"examples": 10000, "bytes": size, "render_seconds": round(
        render_seconds, 2), "chromium_load_seconds": round(loaded.seconds, 2)}))
