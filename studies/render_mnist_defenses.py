"""Writes docs/results/mnist-defenses.md (and its figures) from the study's results.json."""

from __future__ import annotations

import statistics
from pathlib import Path

PUBLISHED = {  # the study under test, at ε=0.3: clean, FGSM, PGD (%)
    "baseline": (99.00, 96.60, 95.62), "fgsm": (99.08, 97.97, 97.61),
    "pgd": (99.08, 97.52, 97.27), "distillation": (None, None, "93.68 to 95.43"),
}


def pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def _plots(results: dict, folder: Path, stem: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = results["models"]
    files = []
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=True)
    for ax, (label, title) in zip(axes, [("fgsm", "FGSM"), ("pgd", "PGD-40 ×3 restarts"),
                                         ("pgd_cw", "PGD-40 on the CW margin loss")]):
        for name, m in models.items():
            eps = sorted(float(e) for e in m["accuracy"][label])
            ax.plot(eps, [100 * m["accuracy"][label][str(e)] for e in eps], marker="o",
                    markersize=3, label=name)
        ax.set_title(title)
        ax.set_xlabel("ε (L∞, pixels in [0, 1])")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (%)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    files.append(f"{stem}-accuracy.png")
    fig.savefig(folder / files[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, m in models.items():
        conf = m["error_confidences"].get("pgd", [])
        if conf:
            ax.hist(conf, bins=20, range=(0, 1), histtype="step", linewidth=1.5,
                    label=f"{name} ({len(conf)} errors)")
    ax.set_xlabel("confidence of the wrong prediction (PGD, ε=0.3)")
    ax.set_ylabel("misclassified adversarial examples")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    files.append(f"{stem}-confidence.png")
    fig.savefig(folder / files[-1], dpi=110)
    plt.close(fig)
    return files


def _conf_row(name, m, label="pgd") -> str:
    conf = m["error_confidences"].get(label, [])
    if not conf:
        return f"| {name} | 0 | – | – | – | – |"
    return (f"| {name} | {len(conf)} | {min(conf):.4f} | {statistics.median(conf):.4f} | "
            f"{statistics.fmean(conf):.4f} | {100 * sum(c >= 0.9 for c in conf) / len(conf):.1f} |")


def _verdict(m: dict) -> str:
    """The checks that did not pass, worst first ('pass' when none)."""
    flagged = [c for c in m.get("checks", []) if c["status"] != "pass"]
    if not flagged:
        return "pass" if m.get("checks") else "–"
    order = {"fail": 0, "warn": 1}
    return ", ".join(f"{c['status']}: {c['id']}"
                     for c in sorted(flagged, key=lambda c: order[c["status"]]))


def _checks_section(models: dict) -> list[str]:
    lines = ["### What the validity checks said\n",
             ("Every report carries its checks (docs/report.md); those that did not pass, "
              "in their own words:\n")]
    for name, m in models.items():
        flagged = [c for c in m.get("checks", []) if c["status"] != "pass"]
        if not flagged:
            lines.append(f"- **{name}**: every check passed.")
        for c in flagged:
            lines.append(f"- **{name}**, `{c['id']}` ({c['status']}): {c['detail']}")
    stages = [(n, m["standard_stages"]) for n, m in models.items() if m.get("standard_stages")]
    if stages:
        lines += ["", "The `standard` cascade at ε=0.3, robust accuracy after each stage (%):",
                  "", "| model | " + " | ".join(s["label"] for s in stages[0][1]) + " |",
                  "| --- |" + " ---: |" * len(stages[0][1])]
        lines += [f"| {n} | " + " | ".join(pct(s["accuracy"]) for s in st) + " |"
                  for n, st in stages]
    return lines + [""]


def render(results: dict, flaws: dict, doc: Path) -> None:
    doc.parent.mkdir(parents=True, exist_ok=True)
    stem = doc.stem
    figures = _plots(results, doc.parent, stem)
    models = results["models"]
    at = "0.3"
    minutes = sum(m["training"]["seconds"] + m["audit_seconds"] for m in models.values()) / 60
    lines = [TEMPLATE_HEAD.format(n=results["n"], threads=results["threads"],
                                  torch=results["torch"], minutes=f"{minutes:.0f}")]
    lines.append("| model | published clean | published FGSM | published PGD | our clean | "
                 "our FGSM | our PGD-40×3 | our PGD-CW | our standard | our CW-L2 median | "
                 "checks |")
    lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, m in models.items():
        pub = PUBLISHED.get(name, (None, None, None))
        a = m["accuracy"]
        cw = m.get("cw") or {}
        pubs = [("–" if v is None else (v if isinstance(v, str) else f"{v:.2f}")) for v in pub]
        lines.append(f"| {m['title']} | {' | '.join(pubs)} | {pct(m['clean'])} | "
                     f"{pct(a['fgsm'][at])} | {pct(a['pgd'][at])} | {pct(a['pgd_cw'][at])} | "
                     f"{pct(a.get('standard', {}).get(at))} | "
                     f"{cw.get('median_norm') or float('nan'):.2f} | {_verdict(m)} |")
    lines.append("")
    lines += _checks_section(models)
    lines.append(f"![accuracy against ε]({figures[0]})\n")
    lines.append("### Full sweep (accuracy %, first "
                 f"{results['n']} test images)\n")
    eps = [f"{0.05 * i:.2f}".rstrip("0").rstrip(".") if i else "0.0" for i in range(9)]
    keys = [str(round(0.05 * i, 2)) for i in range(9)]
    for label, title in [("fgsm", "FGSM"), ("pgd", "PGD-40, 3 restarts"),
                         ("pgd_cw", "PGD-40 on the CW margin loss")]:
        lines.append(f"**{title}**\n")
        lines.append("| model | " + " | ".join(f"ε={e}" for e in eps) + " |")
        lines.append("| --- |" + " ---: |" * len(eps))
        for name, m in models.items():
            lines.append(f"| {name} | " + " | ".join(pct(m["accuracy"][label].get(k))
                                                     for k in keys) + " |")
        lines.append("")
    lines.append("**CW-L2** (minimum-norm; success = misclassified within the L2 radius)\n")
    radii = ["0.5", "1.0", "1.5", "2.0", "2.5", "3.0"]
    lines.append("| model | " + " | ".join(f"L2≤{r}" for r in radii) +
                 " | success | median L2 |")
    lines.append("| --- |" + " ---: |" * (len(radii) + 2))
    for name, m in models.items():
        cw = m.get("cw") or {}
        lines.append(f"| {name} | " + " | ".join(pct(m["accuracy"]["cw"].get(r))
                                                 for r in radii)
                     + f" | {pct(cw.get('success_rate'))} | "
                       f"{cw.get('median_norm') or float('nan'):.2f} |")
    lines.append("")
    lines.append(TEMPLATE_CONFIDENCE)
    lines.append("| model | misclassified | min confidence | median | mean | ≥ 0.9 (%) |")
    lines.append("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, m in models.items():
        lines.append(_conf_row(name, m))
    lines.append("")
    lines.append(f"![confidence of misclassified adversarial examples]({figures[1]})\n")
    lines.append(TEMPLATE_FLAWS)
    lines.append("| evaluation | " + " | ".join(f"{n} FGSM / PGD" for n in models) + " |")
    lines.append("| --- |" + " ---: |" * len(models))
    for flaw, (desc, _) in flaws.items():
        cells = [f"{pct(m['flaws'][flaw]['fgsm'])} / {pct(m['flaws'][flaw]['pgd'])}"
                 for m in models.values()]
        lines.append(f"| `{flaw}`: {desc} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(TEMPLATE_EXPLAIN.format(**_facts(models)))
    lines.append("## Training runs\n")
    lines.append("| model | method and settings | epochs run | kept epoch | catastrophic "
                 "overfitting | train time (s) | audit time (s) |")
    lines.append("| --- | --- | ---: | ---: | --- | ---: | ---: |")
    for name, m in models.items():
        t = m["training"]
        s = t["spec"]
        keys_ = ["method", "epsilon", "step_size", "steps", "random_start", "beta",
                 "temperature", "epochs", "lr", "lr_schedule"]
        settings = ", ".join(f"{k}={s[k]}" for k in keys_ if k in s)
        co = t["catastrophic_overfitting"]
        co_text = ("no" if not co else
                   f"from the start (epoch {co['epoch']}: FGSM {pct(co['fgsm_accuracy'])}%, "
                   f"PGD {pct(co['pgd_accuracy'])}%)" if co.get("kind") == "masked" else
                   f"epoch {co['epoch']}: PGD {pct(co['pgd_accuracy'])}% (best "
                   f"{pct(co['best_pgd_accuracy'])}% at epoch {co['best_epoch']}), FGSM "
                   f"{pct(co['fgsm_accuracy'])}%")
        lines.append(f"| {name} | {settings} | {t['epochs_run']} | {t['selected_epoch']} | "
                     f"{co_text} | {t['seconds']:.0f} | {m['audit_seconds']:.0f} |")
    lines.append("")
    lines.append("Per-epoch held-out monitors (clean / FGSM / PGD-10 accuracy %, 1000 "
                 "training images held out):\n")
    for name, m in models.items():
        hist = " · ".join(f"{h['epoch']}: {pct(h['clean_accuracy'])}/"
                          f"{pct(h['fgsm_accuracy'])}/{pct(h['pgd_accuracy'])}"
                          for h in m["training"]["history"])
        lines.append(f"- **{name}**: {hist}")
    lines.append("")
    doc.write_text("\n".join(lines))


def _published_cells():
    """(model, attack, published value or (low, high) range) for every published figure."""
    for name, (_, f, p) in PUBLISHED.items():
        for attack, value in (("fgsm", f), ("pgd", p)):
            if isinstance(value, str):
                low, high = (float(v) for v in value.split(" to "))
                yield name, attack, (low, high)
            elif value is not None:
                yield name, attack, (value, value)


def flaw_fit(models: dict) -> list[tuple[str, float, float]]:
    """Each evaluation's distance to the published table, in accuracy points: (flaw, mean,
    max) over every published figure whose model we trained, best fit first. A value inside a
    published range counts as 0."""
    flaws = next(iter(models.values()))["flaws"]
    fits = []
    for flaw in flaws:
        gaps = []
        for name, attack, (low, high) in _published_cells():
            if name in models:
                ours = 100 * models[name]["flaws"][flaw][attack]
                gaps.append(max(low - ours, ours - high, 0.0))
        fits.append((flaw, statistics.fmean(gaps), max(gaps)))
    return sorted(fits, key=lambda t: t[1])


WHY_FLAW = {
    "eps_255": "with ε taken in 0–255 units the attack may move each pixel by 0.3/255, "
               "invisible to every model, so each keeps about its clean accuracy: the "
               "published table's pattern of attacked accuracies a point or three under clean "
               "for every model, the undefended one included",
    "eps_normalized": "ε applied after normalization shrinks the real budget to 0.3·0.3081",
    "unsigned_gradient": "a raw-gradient step barely moves the image where the network is "
                         "confident, which is everywhere after training",
    "softmax_ce": "sign steps ignore the gradient's scale, so this mistake hides nothing",
    "correct": "it is the correct evaluation",
}


def _facts(models: dict) -> dict:
    a = {n: m["accuracy"] for n, m in models.items()}
    f = {n: m["flaws"] for n, m in models.items()}
    g = lambda n, lab: pct(a.get(n, {}).get(lab, {}).get("0.3"))
    fits = flaw_fit(models)
    (best, best_mean, best_max), (second, second_mean, second_max) = fits[0], fits[1]
    t = {n: m["training"] for n, m in models.items()}
    per_epoch = {n: t[n]["seconds"] / max(t[n]["epochs_run"], 1) for n in t}
    fz = t.get("fgsm_zero", {}).get("catastrophic_overfitting") or {}
    return {
        "base_pgd": g("baseline", "pgd"), "base_fgsm": g("baseline", "fgsm"),
        "fgsm_pgd": g("fgsm", "pgd"), "pgd_pgd": g("pgd", "pgd"),
        "trades_pgd": g("trades", "pgd"), "fz_pgd": g("fgsm_zero", "pgd"),
        "fz_fgsm": g("fgsm_zero", "fgsm"),
        "fz_flag": (f"flagged it at epoch {fz['epoch']} (FGSM {pct(fz['fgsm_accuracy'])}%, "
                    f"PGD {pct(fz['pgd_accuracy'])}% on the held-out slice: a collapse inside "
                    f"the first epoch)" if fz else "did not flag it"),
        "fz_kept": t.get("fgsm_zero", {}).get("selected_epoch"),
        "dist_fgsm": g("distillation", "fgsm"), "dist_pgd": g("distillation", "pgd"),
        "dist_cw": g("distillation", "pgd_cw"),
        "dist_logit": f"{models['distillation']['mean_abs_logit']:.0f}",
        "base_logit": f"{models['baseline']['mean_abs_logit']:.1f}",
        "logit_ratio": f"{models['distillation']['mean_abs_logit'] / models['baseline']['mean_abs_logit']:.0f}", "dist_clean": pct(models["distillation"]["clean"]),
        "dist_cwl2": pct((models.get("distillation", {}).get("cw") or {}).get("success_rate")),
        "norm_fgsm": pct(f["baseline"]["eps_normalized"]["fgsm"]),
        "norm_pgd": pct(f["baseline"]["eps_normalized"]["pgd"]),
        "e255_fgsm": pct(f["baseline"]["eps_255"]["fgsm"]),
        "e255_pgd": pct(f["baseline"]["eps_255"]["pgd"]),
        "sm_fgsm": pct(f["baseline"]["softmax_ce"]["fgsm"]),
        "sm_pgd": pct(f["baseline"]["softmax_ce"]["pgd"]),
        "us_fgsm": pct(f["baseline"]["unsigned_gradient"]["fgsm"]),
        "us_pgd": pct(f["baseline"]["unsigned_gradient"]["pgd"]),
        "best": best, "best_mean": f"{best_mean:.1f}", "best_max": f"{best_max:.1f}",
        "best_why": WHY_FLAW.get(best, ""),
        "second": second, "second_mean": f"{second_mean:.1f}",
        "second_max": f"{second_max:.1f}",
        "correct_mean": f"{next(m for k, m, _ in fits if k == 'correct'):.1f}",
        "epochs_text": (f"{t['pgd']['epochs_run']} epochs each"
                        if t["pgd"]["epochs_run"] == t["trades"]["epochs_run"] else
                        f"{t['pgd']['epochs_run']} and {t['trades']['epochs_run']} epochs"),
        "pgd_cost": f"{per_epoch['pgd'] / per_epoch['fgsm']:.1f}",
        "trades_cost": f"{per_epoch['trades'] / per_epoch['fgsm']:.1f}",
    }


TEMPLATE_HEAD = """# The MNIST defense study, reproduced

A published study trained a CNN on MNIST with and without defenses and reported, at ε=0.3 (L∞,
pixels in [0, 1]), robust accuracies in the high nineties for every model, the undefended one
included. Well-known results disagree: a normally trained CNN falls to about 0% under PGD at
ε=0.3, Madry et al.'s PGD-trained model holds 89.6% under PGD-100 with restarts, and Carlini &
Wagner broke defensive distillation with 100% success. This page trains the same kinds of
models with this project, attacks them properly, and then tries the usual evaluation mistakes
to find which one produces the study's numbers.

Reproduce (measured: {minutes} minutes of training and auditing at one thread per process;
models are cached in `out/study-mnist`, and `--models a,b` splits the work between processes):

```sh
make study-mnist
```

Set-up: the CNN of Wong, Rice & Kolter (2020) for MNIST (`wong_mnist`: two strided
convolutions, two dense layers), trained on 59,000 MNIST training images with 1,000 held out
for the per-epoch monitors and checkpoint selection; evaluated on the first {n} test images.
Madry's larger CNN (`madry_mnist`) costs ten times more per pass on this CPU, which would
put PGD-AT and TRADES at hours. Attacks: FGSM; PGD-40 (cross-entropy, step 2.5ε/40, random
start, 3 restarts, best iterate kept); PGD-40 on the CW margin loss; CW-L2 (100 steps, 5
binary-search steps) for the minimum L2 perturbation; and at ε=0.3 the default audit,
`standard` (AutoAttack's cascade: APGD-CE, APGD-T, FAB-T, Square), whose report's validity
checks give the last column. torch {torch}, {threads} thread(s).

## At ε = 0.3: the published table beside ours (accuracy %)
"""

TEMPLATE_CONFIDENCE = """## How confidently the models are wrong

The study reported that its PGD-trained model misclassified one image, with confidence 0.6187.
Below: every misclassified PGD adversarial example at ε=0.3 (our audit's per-example
`confidence` of the wrong prediction), per model.
"""

TEMPLATE_FLAWS = """## Which evaluation mistake reproduces the published numbers?

Each row re-runs FGSM and PGD-40 (one restart) at a nominal ε=0.3 with one mistake common in
attack code, on the same models and images (accuracy %, FGSM / PGD):
"""

TEMPLATE_EXPLAIN = """## Why the numbers differ

- **Baseline CNN (published 96.60 FGSM / 95.62 PGD; ours {base_fgsm} / {base_pgd}).** An
  undefended CNN is not robust at ε=0.3: that is a third of the pixel range, enough to draw
  strokes. Our PGD drives it to {base_pgd}%, as PGD does to undefended MNIST networks in
  the literature (the issue's "about 0%").
- **Which mistake fits: `{best}`.** Scored against every published figure of a model we
  trained, `{best}` is off by {best_mean} points on average and {best_max} at most; the next
  best, `{second}`, by {second_mean} on average and {second_max} at most; the correct
  evaluation by {correct_mean} on average. Why: {best_why}. The other mistakes, on the
  baseline: stepping along the raw gradient instead of its sign gives {us_fgsm} (FGSM) /
  {us_pgd} (PGD); applying ε after `Normalize((0.1307,), (0.3081,))` gives {norm_fgsm} /
  {norm_pgd}; taking the cross-entropy of a softmax output gives {sm_fgsm} / {sm_pgd} (sign
  steps ignore the gradient's scale, so that mistake hides nothing). This identifies a mistake
  that *produces* the published numbers, not proof of what the study did.
- **FGSM-AT (published 97.61 PGD; ours {fgsm_pgd}).** Wong et al.'s fast FGSM training works:
  {fgsm_pgd}% under our PGD-40×3 here (the full-test-set PGD-50×10 figure is in
  `docs/benchmarks.md`). It does not reach 97.6%: no MNIST model of this size does under a
  correct PGD at ε=0.3. Without the random start, FGSM training never becomes robust: FGSM
  accuracy climbs ({fz_fgsm}% at ε=0.3 on the test images) while PGD accuracy stays low
  ({fz_pgd}%), the signature of catastrophic overfitting. The monitors {fz_flag}; this study
  lets that run continue to show it, and even its best epoch ({fz_kept}) is not robust.
- **PGD-AT and TRADES (published 97.27; ours {pgd_pgd} and {trades_pgd}).** Multi-step
  robust training buys the most robustness, at {pgd_cost}× (PGD-AT) and {trades_cost}×
  (TRADES) FGSM-AT's cost per epoch here; {epochs_text} on a small CNN land near Madry et al.'s 89.6% (PGD-100 with restarts, a larger network, about 80
  epochs) and far from 97%. Both ramp ε up over their first two epochs: at full ε from the
  first step, PGD-AT left this network at chance accuracy (loss 2.30 for two epochs, measured).
- **Defensive distillation (published 93.68–95.43 under PGD).** Against the distilled model
  FGSM and PGD on cross-entropy look strong ({dist_fgsm}% and {dist_pgd}%, clean
  {dist_clean}%): trained at T=100 and deployed at T=1, its logits are {logit_ratio} times the
  baseline's (mean |logit| {dist_logit} against {base_logit} on the test images), so the
  softmax saturates, and the cross-entropy gradient underflows to zero, so the sign step
  has little to follow. The same PGD on the CW margin loss, which never saturates, leaves
  {dist_cw}%, and CW-L2 succeeds on {dist_cwl2}% of the correctly classified images.
  Distillation masks gradients; it does not add robustness. Numbers like 93–95% for it are
  what a cross-entropy attack, or no attack at all, reports.
"""
