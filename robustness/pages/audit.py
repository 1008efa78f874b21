"""What the audit page shows, computed from the report alone (and the stored adversarial set
for the gallery's images): the verdict, the model card, the threat model in words, the plots,
the gallery and the provenance."""

from __future__ import annotations

import json

from robustness.evaluation.examples import select_columns
from robustness.evaluation.gate import worst_check
from robustness.pages import plots
from robustness.pages.gallery import GALLERY_SIZE, Images, gallery

ATTACK_NAMES = {"fgsm": "FGSM", "pgd": "PGD", "cw": "Carlini-Wagner", "deepfool": "DeepFool",
                "apgd": "APGD", "fab": "FAB", "square": "Square"}
NORM_WORDS = {"linf": ("L∞", "each input value may move by at most ε"),
              "l2": ("L2", "the perturbation's Euclidean norm is at most ε")}


def norm_name(norm: str | None) -> str:
    return NORM_WORDS.get(norm or "", (str(norm), ""))[0]


def describe_attack(a: dict) -> str:
    """One attack's resolved hyperparameters in a few words."""
    name = str(a.get("name", "?"))
    if name == "cascade":
        words = f"{a.get('preset', 'standard')} cascade (AutoAttack's way: each stage attacks " \
                f"what the earlier ones left robust)"
    else:
        words = ATTACK_NAMES.get(name, name)
    details = []
    if a.get("steps"):
        details.append(f"{a['steps']} steps")
    if (a.get("restarts") or 1) > 1:
        details.append(f"{a['restarts']} restarts")
    if a.get("loss"):
        details.append(f"{a['loss'].upper()} loss")
    if a.get("targets"):
        details.append(f"{a['targets']} target classes")
    if a.get("queries"):
        details.append(f"{a['queries']} queries, scores only (black-box)")
    if (a.get("eot") or 1) > 1:
        details.append(f"gradients averaged over {a['eot']} draws (EOT)")
    label = a.get("label")
    shown = f"{label}: {words}" if label and label != name else words
    return shown + (f" ({', '.join(details)})" if details else "")


def threat_model(report: dict) -> list[str]:
    """The threat model in sentences, one per norm, from the resolved attacks."""
    attacks = report.get("provenance", {}).get("attacks") or report.get("spec", {}).get(
        "attacks") or []
    by_norm: dict[str, list[dict]] = {}
    for a in attacks:
        by_norm.setdefault(a.get("norm") or "linf", []).append(a)
    sentences = []
    for norm, group in by_norm.items():
        name, meaning = NORM_WORDS.get(norm, (str(norm), ""))
        grid = sorted({e for a in group for e in (a.get("epsilons") or [])})
        sentences.append(
            f"{name}: {meaning}, for ε in {{{', '.join(f'{e:g}' for e in grid)}}} (inputs in "
            f"[0, 1] before the model's own normalization). The attacker knows the model: "
            f"{'; '.join(describe_attack(a) for a in group)}.")
    return sentences


def worst_case(report: dict) -> dict[tuple[str, float], list[tuple[int, float, bool]]]:
    """Per (norm, ε): each example's worst outcome over the attacks, as (prediction,
    confidence, wrong): the most confident wrong prediction if any attack broke it."""
    ex = report["examples"]
    labels = ex["label"]
    out: dict[tuple[str, float], list[tuple[int, float, bool]]] = {}
    for col in ex["adversarial"]:
        key = (col.get("norm") or "linf", col["epsilon"])
        rows = out.setdefault(key, [(y, 0.0, False) for y in labels])
        for i, (p, c) in enumerate(zip(col["pred"], col["confidence"])):
            if p != labels[i] and (not rows[i][2] or c > rows[i][1]):
                rows[i] = (p, c, True)
    return out


def chosen_epsilon(report: dict, epsilon: float | None) -> tuple[str, float] | None:
    """The (norm, ε) the per-class plots show: the requested ε (checked against the grid), or
    the middle of the first norm's grid above 0."""
    results = report["results"]
    if not results:
        return None
    if epsilon is not None:
        col = select_columns(report, None, epsilon)[0]
        return col.get("norm") or "linf", col["epsilon"]
    norm = results[0]["norm"]
    grid = sorted({r["epsilon"] for r in results if r["norm"] == norm and r["epsilon"] > 0})
    return (norm, grid[len(grid) // 2]) if grid else (norm, results[0]["epsilon"])


def class_names(report: dict, n: int) -> list[str]:
    labels = report.get("model", {}).get("labels") or []
    return [labels[c] if c < len(labels) else str(c) for c in range(n)]


def _plots(report: dict, chosen: tuple[str, float] | None) -> list[dict]:
    results, clean = report["results"], report["clean"]
    norms = list(dict.fromkeys(r["norm"] for r in results))
    model = report.get("model", {}).get("name") or report.get("model", {}).get("architecture")
    out = []

    def add(section: str, plot, caption: str):
        if plot is not None:
            out.append({"section": section, "uri": plot.uri, "alt": plot.alt,
                        "caption": caption})

    worst = {(w["norm"], w["epsilon"]): w["accuracy"] for w in report.get("worst_case", [])}
    panels = []
    for norm in norms:
        series = [(label, [(r["epsilon"], r["accuracy"]) for r in results
                           if r["norm"] == norm and r["label"] == label], {})
                  for label in dict.fromkeys(r["label"] for r in results if r["norm"] == norm)]
        series.append(("worst case over attacks",
                       [(e, a) for (n, e), a in worst.items() if n == norm],
                       {"color": "black", "linewidth": 2.5, "linestyle": "--", "marker": "x"}))
        panels.append((f"{norm_name(norm)} threat model", series))
    summary = "; ".join(f"{norm_name(n)} ε={e:g}: {100 * a:.1f}%" for (n, e), a in worst.items())
    add("accuracy", plots.lines(panels, y_label="robust accuracy",
                                hlines=[(clean["accuracy"], "clean accuracy")],
                                alt=f"Robust accuracy of {model} against ε, per attack, with the "
                                    f"worst case over attacks ({summary}) and the clean "
                                    f"accuracy ({100 * clean['accuracy']:.1f}%)."),
        "Robust accuracy against ε: one line per attack, the worst case over all attacks "
        "(dashed black) and the clean accuracy (dotted).")

    err_panels = []
    for norm in norms:
        series = []
        for label in dict.fromkeys(r["label"] for r in results if r["norm"] == norm):
            rows = [r for r in results if r["norm"] == norm and r["label"] == label]
            series.append((f"{label} top-1", [(r["epsilon"], 1 - r["accuracy"]) for r in rows],
                           {}))
            series.append((f"{label} top-5", [(r["epsilon"], 1 - r["top5_accuracy"])
                                              for r in rows if r.get("top5_accuracy")
                                              is not None], {"linestyle": ":"}))
        err_panels.append((f"{norm_name(norm)} threat model", series))
    add("errors", plots.lines(err_panels, y_label="error", alt=(
        f"Top-1 and top-5 error of {model} against ε, per attack: the top-5 error is the "
        "fraction of examples whose true class is not among the five most probable.")),
        "Top-1 error (solid) and top-5 error (dotted) against ε. A top-5 error far below the "
        "top-1 error means the true class stays near the top: the attack only just wins.")

    taus = [float(t) for t in report.get("spec", {}).get("taus", [])]
    outcomes = worst_case(report)
    box_panels = []
    for norm in norms:
        groups = [(e, [c for _, c, wrong in rows if wrong])
                  for (n, e), rows in sorted(outcomes.items()) if n == norm]
        box_panels.append((f"{norm_name(norm)}: misclassified adversarials", groups))
    silent = [f"{norm_name(n)} ε={e:g}: {sum(1 for _, c, w in rows if w and c >= max(taus))} "
              f"of {len(rows)} at or above τ={max(taus):g}"
              for (n, e), rows in sorted(outcomes.items())] if taus else []
    add("confidence", plots.boxes(box_panels, thresholds=taus, alt=(
        f"Distribution of {model}'s confidence in the wrong class on misclassified "
        f"adversarial examples, per ε, against the silent-error thresholds. "
        + "; ".join(silent))),
        "Confidence on misclassified adversarials, per ε (worst case over attacks; boxes from "
        "the 25th to the 75th percentile, whiskers from the 5th to the 95th, the median in "
        "red). Above a threshold τ, an error is silent: the model is wrong and sure of it.")

    if chosen is not None and chosen in outcomes:
        norm, eps = chosen
        labels = report["examples"]["label"]
        k = max(report.get("model", {}).get("num_classes") or 0,
                max(labels, default=-1) + 1,
                max((p for p, _, _ in outcomes[chosen]), default=-1) + 1)
        names = class_names(report, k)
        present = sorted(set(labels))
        rows = outcomes[chosen]
        clean_pred = report["examples"]["clean"]["pred"]
        clean_acc = [sum(clean_pred[i] == c for i in range(len(labels)) if labels[i] == c)
                     / labels.count(c) for c in present]
        robust_acc = [sum(not rows[i][2] for i in range(len(labels)) if labels[i] == c)
                      / labels.count(c) for c in present]
        where = f"{norm_name(norm)} ε={eps:g}"
        weakest = min(zip(robust_acc, present))
        add("classes", plots.class_bars(
            [names[c] for c in present], clean_acc, robust_acc,
            robust_label=f"robust at {where}",
            alt=f"Clean and robust accuracy per class at {where}; the weakest class is "
                f"{names[weakest[1]]} at {100 * weakest[0]:.1f}%."),
            f"Per-class accuracy, clean and under the worst case over attacks at {where}.")
        counts = [[0] * k for _ in range(k)]
        for y, (p, _, _) in zip(labels, rows):
            counts[y][p] += 1
        flows = sorted(((counts[y][p], y, p) for y in range(k) for p in range(k) if y != p),
                       reverse=True)[:3]
        add("classes", plots.confusion(
            names, counts, title=f"predictions under attack at {where}",
            alt=f"Confusion matrix under attack at {where}: rows are true classes, columns "
                f"the predicted ones. Most frequent errors: " + ", ".join(
                    f"{names[y]} → {names[p]} ({n})" for n, y, p in flows if n) + "."),
            f"Where the attacks send each class at {where} (worst case over attacks; the "
            f"diagonal holds the examples that stayed right).")

    minimal = report["examples"].get("minimal_norm") or {}
    by_label = {m["label"]: m for m in report.get("minimal_perturbation", [])}
    series = [(f"{label} ({norm_name(by_label.get(label, {}).get('norm'))})",
               [v for v in values if v is not None]) for label, values in minimal.items()]
    add("minimal", plots.histograms(series, x_label="size of the smallest adversarial found",
                                    alt="Distribution of the smallest adversarial perturbation "
                                        "found per example by the minimum-norm attacks: " +
                                        "; ".join(f"{m['label']} median "
                                                  f"{m.get('median_norm') or 0:.3g}"
                                                  for m in by_label.values()) + "."),
        "The smallest perturbation each minimum-norm attack found, per example (examples it "
        "could not break are left out), with the median dotted.")
    return out


def audit_context(report: dict, images: Images | None = None, *,
                  epsilon: float | None = None, gallery_offset: int = 0,
                  gallery_size: int = GALLERY_SIZE, links: dict | None = None) -> dict:
    """Everything the audit template needs. `links` (served pages only) holds the URLs of the
    JSON report and the /examples resource, and `gallery_page(offset)`, the URL of the page
    whose gallery starts there (for the previous and next links)."""
    model, data = report.get("model", {}), report.get("dataset", {})
    chosen = chosen_epsilon(report, epsilon)
    shown = gallery(report, images, offset=gallery_offset, size=gallery_size)
    links = dict(links or {})
    page = links.pop("gallery_page", None)
    if page is not None:
        links["previous"] = page(max(0, gallery_offset - gallery_size)) if gallery_offset \
            else None
        links["next"] = page(gallery_offset + gallery_size) \
            if gallery_offset + gallery_size < shown["total"] else None
    taus = sorted({t for r in report["results"] for t in r.get("silent_error_rate", {})},
                  key=float)
    checks = report.get("checks", [])
    return {
        "title": f"Robustness report: {model.get('name') or model.get('architecture') or 'model'}",
        "model": model, "dataset": data, "n": len(report["examples"]["index"]),
        "clean": report["clean"], "results": report["results"], "taus": taus,
        "worst_case": report.get("worst_case", []),
        "minimal": report.get("minimal_perturbation", []),
        "gate": report.get("gate"), "checks": checks,
        "worst_check": worst_check(report) if checks else None,
        "threat_model": threat_model(report),
        "training": model.get("training"),
        "chosen": chosen,
        "plots": _plots(report, chosen),
        "gallery": shown,
        "provenance": json.dumps(report.get("provenance", {}), indent=1, sort_keys=True),
        "spec": json.dumps(report.get("spec", {}), indent=1, sort_keys=True),
        "links": links,
    }
