"""The report pages on a real run, measured and photographed: a normally trained MNIST CNN and
its FGSM-AT successor (the README recipe), each audited on the MNIST test set; their audit
pages, the comparison page and the training page are rendered, weighed, opened in headless
Chromium (load time), and screenshotted for the README.

    .venv/bin/python bench/report_pages.py --data-root ../shared/data \\
        [--n 10000] [--out out/report-pages] [--screenshots docs/images]

Needs Debian's chromium (`make test` installs it) and the dev extra (playwright). Writes the
pages and result.json (sizes and times) to --out; figures in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

NORMAL = {"name": "mnist-normal", "architecture": "wong_mnist",
          "dataset": {"name": "mnist", "split": "train"}, "method": "standard",
          "epochs": 2, "batch_size": 100, "lr": 1e-3, "seed": 0,
          "validation": {"n": 1000, "steps": 10}}
# The README recipe: FGSM-AT at ε=0.4 ramped over 4 epochs, monitored at ε=0.3.
FGSM_AT = {"name": "mnist-fgsm-at", "architecture": "wong_mnist",
           "dataset": {"name": "mnist", "split": "train"}, "method": "fgsm",
           "epsilon": 0.4, "step_size": 0.5, "epsilon_warmup": 4,
           "lr_schedule": "cyclic", "epochs": 10, "batch_size": 100, "lr": 5e-3, "seed": 0,
           "validation": {"n": 1000, "steps": 10, "epsilon": 0.3}}
AUDIT = {"attacks": [{"name": "fgsm"}, {"name": "pgd", "steps": 20, "step_size": 0.02},
                     {"name": "deepfool", "steps": 10, "epsilons": [0.0, 1.0, 2.0, 3.0]}],
         "epsilons": [0.0, 0.1, 0.2, 0.3], "batch_size": 1000, "seed": 0}
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def trained(spec: dict, out: Path, data_root) -> Path:
    from robustness.training import parse_training_spec, save_training, train_from_spec

    weights = out / "model.safetensors"
    if not weights.is_file():
        result = train_from_spec(parse_training_spec(spec), data_root=data_root, device="cpu")
        save_training(result, out)
    return weights


def audited(weights: Path, n: int, data_root) -> tuple[dict, dict]:
    from robustness.audit import audit_model_file, training_recipe
    from robustness.evaluation.export import adversarial_tensors
    from robustness.spec import parse_audit_spec

    card = json.loads(weights.with_suffix(".json").read_text())
    spec = parse_audit_spec({**AUDIT, "dataset": {"name": "mnist", "split": "test", "n": n}})
    result = audit_model_file(spec, weights, None, data_root=data_root, device="cpu",
                              collect_adversarial=True,
                              model_extra={"training": training_recipe(card)})
    return result.report, adversarial_tensors(result, result.report)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--n", type=int, default=10000, help="test images audited")
    parser.add_argument("--out", default="out/report-pages")
    parser.add_argument("--screenshots", help="copy the screenshots here (docs/images)")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    torch.set_num_threads(2)
    out = Path(args.out)
    from robustness.pages import render_audit_page, render_comparison_page, render_training_page
    from robustness.pages.gallery import TensorImages

    pages, timings = {}, {}
    reports = {}
    for name, spec in (("normal", NORMAL), ("fgsm-at", FGSM_AT)):
        started = time.perf_counter()
        weights = trained(spec, out / name, args.data_root)
        timings[f"{name}_train_s"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        report, tensors = audited(weights, args.n, args.data_root)
        timings[f"{name}_audit_s"] = round(time.perf_counter() - started, 1)
        (out / f"{name}-report.json").write_text(json.dumps(report))
        reports[name] = report
        started = time.perf_counter()
        pages[f"audit-{name}"] = render_audit_page(report, TensorImages(tensors))
        timings[f"audit-{name}_render_s"] = round(time.perf_counter() - started, 2)
    started = time.perf_counter()
    pages["compare"] = render_comparison_page([("normal", reports["normal"]),
                                               ("fgsm-at", reports["fgsm-at"])])
    timings["compare_render_s"] = round(time.perf_counter() - started, 2)
    card = json.loads((out / "fgsm-at" / "model.json").read_text())
    pages["training"] = render_training_page(card)
    sizes = {}
    for name, html in pages.items():
        (out / f"{name}.html").write_text(html)
        sizes[name] = len(html.encode())

    from playwright.sync_api import sync_playwright

    loads, shots = {}, []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        for name in pages:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors = []
            page.on("console", lambda m, errors=errors: errors.append(m.text)
                    if m.type == "error" else None)
            page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
            started = time.perf_counter()
            page.goto((out / f"{name}.html").resolve().as_uri(), wait_until="load")
            loads[name] = round(time.perf_counter() - started, 2)
            assert not errors, (name, errors)
            shot = out / f"report-{name}.png"
            if name == "audit-fgsm-at":
                page.screenshot(path=str(shot), clip={"x": 0, "y": 0, "width": 1280,
                                                      "height": 2200}, full_page=True)
                gallery = out / "report-gallery.png"
                box = page.locator("#gallery").bounding_box()
                page.screenshot(path=str(gallery), full_page=True, clip={
                    "x": 0, "y": box["y"] - 10, "width": 1280, "height": 1250})
                shots.append(gallery)
            elif name != "audit-normal":
                page.screenshot(path=str(shot), full_page=True)
            if shot.is_file():
                shots.append(shot)
            page.close()
        browser.close()
    if args.screenshots:
        Path(args.screenshots).mkdir(parents=True, exist_ok=True)
        for shot in shots:
            shutil.copy(shot, Path(args.screenshots) / shot.name)
    result = {"n": args.n, "bytes": sizes, "chromium_load_s": loads, **timings,
              "clean": {k: r["clean"]["accuracy"] for k, r in reports.items()},
              "worst_case": {k: {f"{w['norm']} {w['epsilon']:g}": w["accuracy"]
                                 for w in r["worst_case"]} for k, r in reports.items()},
              "checks": {k: [f"{c['id']}:{c['status']}" for c in r["checks"]
                             if c["status"] != "pass"] for k, r in reports.items()}}
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
