"""Validity checks: cheap probes, run with every audit, that say when the audit's own figures
should not be trusted (Carlini et al. 2019, "On Evaluating Adversarial Robustness"; Athalye,
Carlini & Wagner 2018 on gradient masking).

Each check returns `{id, status: pass|warn|fail, detail, figures}`, or nothing when it does
not apply. Probes run on a sample of at most `SAMPLE` examples (the first of the audit's),
so all of them together cost a few percent of an audit. docs/report.md says, per check, what
it detects, its threshold and why.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from robustness.attacks import pgd, square, threat_model

SAMPLE = 100
MIN_PROBED = 20  # fewer examples than this tell the probing checks nothing
PROBE_STEPS = 20
PROBE_QUERIES = 300


def _check(id_: str, status: str, detail: str, **figures) -> dict:
    return {"id": id_, "status": status, "detail": detail, "figures": figures}


def probabilities(out: torch.Tensor) -> dict:
    """Outputs that are already probabilities (or log-probabilities) make the report's
    confidences wrong and the cross-entropy gradient weak: the model must return logits."""
    rows = out.float()
    as_probs = bool((rows >= -1e-6).all() and torch.allclose(rows.sum(1), torch.ones(len(rows)),
                                                             atol=1e-3))
    as_logprobs = bool((rows <= 1e-6).all() and torch.allclose(
        torch.logsumexp(rows, 1), torch.zeros(len(rows)), atol=1e-3))
    if as_probs or as_logprobs:
        kind = "probabilities" if as_probs else "log-probabilities"
        return _check("probabilities", "fail", f"the model returns {kind}, not logits: the "
                      f"report's confidences are a softmax of {kind}, and cross-entropy "
                      f"attacks see a flattened loss; return the logits", kind=kind)
    return _check("probabilities", "pass", "the model returns logits")


def randomness(first: torch.Tensor, second: torch.Tensor) -> dict:
    """A model that is random at inference defeats single-sample gradients: attack it with
    EOT (averaged gradients), and read its figures as one draw among many."""
    spread = float((first - second).abs().max())
    flips = float((first.argmax(1) != second.argmax(1)).float().mean())
    if spread > 1e-4 * max(1.0, float(first.abs().max())):
        return _check("randomness", "fail", f"two forward passes on the same inputs differ "
                      f"(largest logit difference {spread:.3g}, {flips:.1%} of predictions "
                      f"change): the model is random at inference (dropout left on, noise "
                      f"layers); gradients of one draw are not the model's", max_difference=spread,
                      prediction_flips=flips)
    return _check("randomness", "pass", "two forward passes agree", max_difference=spread)


def batch_dependence(model, x: torch.Tensor, together: torch.Tensor) -> dict:
    """Batch norm in train mode makes one example's prediction depend on its companions:
    an attack then moves the batch statistics, not the example."""
    half = len(x) // 2
    if half == 0:
        return None
    try:
        with torch.no_grad():
            alone = torch.cat([model(x[i:i + 1]) for i in range(min(half, 16))])
    except RuntimeError as exc:  # e.g. batch norm in train mode refuses a batch of one
        return _check("batch_dependence", "fail", f"the model cannot classify one example "
                      f"alone ({exc}): batch norm in train mode? call model.eval() before "
                      f"exporting")
    spread = float((alone - together[:len(alone)]).abs().max())
    if spread > 1e-3 * max(1.0, float(together.abs().max())):
        return _check("batch_dependence", "fail", f"an example's logits change with the other "
                      f"examples in its batch (largest difference {spread:.3g}): batch norm in "
                      f"train mode? call model.eval() before exporting", max_difference=spread)
    return _check("batch_dependence", "pass", "predictions do not depend on the batch",
                  max_difference=spread)


def vanishing_gradients(model, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Zero, NaN or underflowing input gradients (a saturated softmax, non-differentiable
    preprocessing such as quantization) leave gradient attacks blind: their figures are an
    upper bound that may be far from the truth."""
    x = x.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    norms = grad.flatten(1).norm(dim=1)
    dead = (~torch.isfinite(norms)) | (norms < 1e-10)
    fraction = float(dead.float().mean())
    figures = {"fraction": fraction, "median_gradient_norm": float(norms.nan_to_num(0).median())}
    if fraction >= 0.5:
        return _check("vanishing_gradients", "fail", f"{fraction:.0%} of the sampled examples "
                      f"have a zero, NaN or underflowing input gradient: gradient attacks "
                      f"cannot see this model (shattered or saturated gradients); its robust "
                      f"accuracy is at best an upper bound", **figures)
    if fraction >= 0.1:
        return _check("vanishing_gradients", "warn", f"{fraction:.0%} of the sampled examples "
                      f"have a zero, NaN or underflowing input gradient", **figures)
    return _check("vanishing_gradients", "pass", "input gradients are alive", **figures)


def _probe(model, x, y, norm: str, eps: float, loss: str, generator) -> float:
    adv = pgd(model, x, y, threat_model(norm, eps), steps=PROBE_STEPS,
              step_size=2.5 * eps / PROBE_STEPS, loss=loss, generator=generator)
    with torch.no_grad():
        return float((model(adv).argmax(1) == y).float().mean())


def loss_disagreement(model, x, y, norm: str, eps: float, generator) -> dict:
    """Cross-entropy saturates when logits are scaled up (defensive distillation); the margin
    loss does not. A margin attack far stronger than a cross-entropy one at the same budget
    says the cross-entropy figures are masked."""
    ce = _probe(model, x, y, norm, eps, "ce", generator)
    mg = _probe(model, x, y, norm, eps, "margin", generator)
    figures = {"epsilon": eps, "norm": norm, "ce_accuracy": ce, "margin_accuracy": mg}
    if ce - mg > 0.1:
        return _check("loss_disagreement", "fail", f"at ε={eps:g} ({norm}), PGD on the margin "
                      f"loss leaves {mg:.1%} robust where PGD on cross-entropy leaves {ce:.1%}: "
                      f"the cross-entropy gradient is masked (scaled logits, saturated softmax); "
                      f"trust only margin/DLR attacks", **figures)
    return _check("loss_disagreement", "pass", f"cross-entropy and margin PGD agree at "
                  f"ε={eps:g}", **figures)


def unbounded_epsilon(model, x, y, norm: str, num_classes: int, generator) -> dict:
    """With a budget that reaches every image, any model can be fooled: accuracy must fall to
    about chance. If it does not, the attack is not working against this model."""
    eps = 1.0 if norm == "linf" else math.sqrt(x[0].numel())
    acc = _probe(model, x, y, norm, eps, "margin", generator)
    chance = 1.0 / max(num_classes, 2)
    figures = {"epsilon": eps, "norm": norm, "accuracy": acc, "chance": chance}
    if acc > max(2 * chance, 0.1):
        return _check("unbounded_epsilon", "fail", f"at ε={eps:g} ({norm}), where any image is "
                      f"reachable, accuracy is still {acc:.1%} (chance is {chance:.1%}): the "
                      f"gradient attacks cannot move this model", **figures)
    return _check("unbounded_epsilon", "pass", f"accuracy falls to {acc:.1%} at ε={eps:g}",
                  **figures)


def noise_baseline(model, x, y, norm: str, eps: float, attack_accuracy: float, label: str,
                   generator) -> dict:
    """Random noise of the same size must not be stronger than the attack: if it is, the
    attack is broken or the gradients mislead it."""
    delta = threat_model(norm, eps).random_init(x, generator)
    with torch.no_grad():
        acc = float((model((x + delta).clamp(0, 1)).argmax(1) == y).float().mean())
    figures = {"epsilon": eps, "norm": norm, "attack": label, "noise_accuracy": acc,
               "attack_accuracy": attack_accuracy}
    if acc < attack_accuracy - 0.05:
        return _check("noise_baseline", "fail", f"random noise at ε={eps:g} leaves {acc:.1%} "
                      f"robust, fewer than {label} ({attack_accuracy:.1%}): the attack is "
                      f"weaker than chance, so its figure means nothing", **figures)
    return _check("noise_baseline", "pass", f"{label} beats random noise at ε={eps:g}",
                  **figures)


def black_box(model, x, y, norm: str, eps: float, robust: torch.Tensor, square_broken,
              generator) -> dict:
    """Square, which never takes a gradient, breaking points that every gradient attack left
    robust means the gradients are masked: the gradient attacks' figures overstate
    robustness (what AutoAttack's own check flags). `square_broken`, when the audit ran
    Square itself, says per sampled example whether it broke it; else a short Square
    (PROBE_QUERIES) runs on the robust ones."""
    left = int(robust.sum())
    if left == 0:
        return None
    if square_broken is None:
        rows = torch.nonzero(robust).squeeze(1)
        adv = square(model, x[rows], y[rows], threat_model(norm, eps), queries=PROBE_QUERIES,
                          generator=generator)
        with torch.no_grad():
            found = int((model(adv).argmax(1) != y[rows]).sum())
        how = f"Square ({PROBE_QUERIES} queries)"
    else:
        found = int((square_broken & robust).sum())
        how = "the audit's Square"
    fraction = found / left
    figures = {"epsilon": eps, "norm": norm, "gradient_robust": left, "broken_by_square": found,
               "fraction": fraction}
    if fraction > 0.05 and found >= 2:
        return _check("black_box", "fail", f"at ε={eps:g}, {how} breaks {found} of the {left} "
                      f"sampled examples every gradient attack left robust ({fraction:.0%}): "
                      f"the gradients are masked and the gradient attacks' figures overstate "
                      f"robustness", **figures)
    # AutoAttack warns at any fall of 0.2 points; PGD- and TRADES-trained MNIST models at
    # ε=0.3 show 1-2% (docs/results/mnist-defenses.md), so more than 3% (and 5 examples) warns.
    if fraction > 0.03 and found >= 5:
        return _check("black_box", "warn", f"at ε={eps:g}, {how} breaks {found} of the {left} "
                      f"sampled examples every gradient attack left robust ({fraction:.1%}): "
                      f"the gradients are partly masked, and a gradient attack alone "
                      f"overstates robustness", **figures)
    return _check("black_box", "pass", f"{how} breaks {found} of the {left} sampled examples "
                  f"the gradient attacks left robust at ε={eps:g}", **figures)


def single_step_beats_iterative(broken: dict[str, list], y_len: int, pairs) -> list[dict]:
    """Per example, an iterative attack must break whatever a single step of the same norm
    breaks (it starts where FGSM ends, in effect). FGSM succeeding where PGD fails is the
    signature of a gradient that points the wrong way locally."""
    out = []
    for fgsm_label, iterative_label, norm in pairs:
        only_fgsm = sum(1 for a, b in zip(broken[fgsm_label], broken[iterative_label])
                        if a is not None and (b is None or b > a))
        fraction = only_fgsm / max(y_len, 1)
        figures = {"single_step": fgsm_label, "iterative": iterative_label, "norm": norm,
                   "fraction": fraction}
        status = "warn" if fraction > 0.01 else "pass"
        detail = (f"{fraction:.1%} of examples are broken by {fgsm_label} at a smaller ε than "
                  f"by {iterative_label}" if status == "warn" else
                  f"{iterative_label} breaks every example {fgsm_label} breaks, as early")
        out.append(_check("iterative_beats_single_step", status, detail, **figures))
    return out


def eight_bit(kept: int, broken: int) -> dict:
    """Adversarials that stop fooling the model once rounded to 8-bit pixels exist only in
    floating point: a deployed pipeline that quantizes its inputs would not see them."""
    if broken == 0:
        return None
    fraction = kept / broken
    figures = {"adversarials": broken, "still_adversarial": kept, "fraction": fraction}
    if fraction < 0.9:
        return _check("eight_bit", "warn", f"only {fraction:.1%} of the adversarial examples "
                      f"stay adversarial after rounding to 1/255: the robust accuracy "
                      f"depends on sub-pixel perturbations", **figures)
    return _check("eight_bit", "pass", f"{fraction:.1%} of the adversarial examples survive "
                  f"rounding to 1/255", **figures)


def preprocessing(model, data, accuracy: float) -> dict | None:
    """A declared normalization that does not fit the data (a mean in 0-255 units, the
    statistics of another data set, normalization applied twice) and a clean accuracy far
    below the one the model declares both mean the audit measured a different model from
    the one deployed: its figures are about a broken input pipeline."""
    meta = getattr(model, "metadata", None)
    pre = getattr(meta, "preprocessing", None)
    declared = getattr(meta, "accuracy", None)
    if pre is None and declared is None:
        return None
    x = data.x[:1000].float()
    data_mean = x.mean(dim=(0, 2, 3))
    data_std = x.std(dim=(0, 2, 3)).clamp_min(1e-6)
    figures, problems, status = {"data_mean": data_mean.tolist(),
                                 "data_std": data_std.tolist()}, [], "pass"
    if pre is not None:
        channels = len(data_mean)
        mean = torch.tensor(pre.mean).expand(channels)
        std = torch.tensor(pre.std).expand(channels)
        figures.update(declared_mean=mean.tolist(), declared_std=std.tolist())
        if (mean.abs() > 1.5).any() or (std > 2).any():
            status = "fail"
            problems.append(f"the declared normalization (mean {pre.mean}, std {pre.std}) is "
                            f"in 0-255 units, but inputs are in [0, 1]")
        elif ((mean - data_mean).abs() > 0.3).any() or ((std / data_std) > 4).any() or \
                ((std / data_std) < 0.25).any():
            status = "warn"
            problems.append(f"the declared normalization (mean {pre.mean}, std {pre.std}) is "
                            f"far from the data's own statistics (mean "
                            f"{[round(v, 3) for v in data_mean.tolist()]}, std "
                            f"{[round(v, 3) for v in data_std.tolist()]})")
    figures["clean_accuracy"] = accuracy
    if declared is not None:
        n = len(data.y)
        slack = 2 * math.sqrt(max(declared * (1 - declared), 1e-4) / max(n, 1))
        figures.update(declared_accuracy=declared)
        gap = declared - accuracy
        if gap > 0.2 + slack:
            status = "fail"
        elif gap > 0.05 + slack and status == "pass":
            status = "warn"
        if gap > 0.05 + slack:
            problems.append(f"clean accuracy {accuracy:.1%} is far below the declared "
                            f"{declared:.1%}")
    if problems:
        return _check("preprocessing", status, "; ".join(problems) + ": check the model's "
                      "preprocessing against the data (the audit attacks what it was given)",
                      **figures)
    return _check("preprocessing", "pass", "the declared preprocessing and accuracy fit the "
                  "data", **figures)


def _black_box_of_audit(model, x, y, clean_ok, spec, bounded, broken_at, stages, m, norm,
                        probed: int, generator):
    """black_box at a norm's largest ε, from the audit's Square if it ran one (alone or as a
    cascade's stage, which sees exactly the examples the gradient stages left); else from a
    short Square on the first `probed` examples (0: none paid for)."""
    largest = max(e for a, _ in bounded if a.norm == norm for e in spec.grid(a))
    if largest <= 0:
        return None

    def broken(label):
        return torch.tensor([b is not None and b <= largest for b in broken_at[label][:m]],
                            device=x.device)

    gradient, squares = [], []
    for attack, label in bounded:
        if attack.norm != norm or largest not in spec.grid(attack):
            continue
        if attack.name == "square":
            squares.append(broken(label))
            continue
        stage = stages.get((label, largest))
        square_at = [i for i, (_, s) in enumerate(attack.stages()) if s.name == "square"] \
            if stage is not None else []
        if square_at:
            stage = stage[:m].to(x.device)
            gradient.append((stage >= 0) & (stage < square_at[0]))
            squares.append(stage == square_at[0])
        else:
            gradient.append(broken(label))
    if not gradient or (not squares and not probed):
        return None
    robust = ~torch.stack(gradient).any(0) & clean_ok
    if squares:
        return black_box(model, x, y, norm, largest, robust, torch.stack(squares).any(0),
                         generator)
    return black_box(model, x[:probed], y[:probed], norm, largest, robust[:probed], None,
                     generator)


def convergence(model, data, attack, label: str, eps: float, broken: list, rows: int,
                generator, device) -> dict | None:
    """Doubling the iterations of the strongest attack must not change its figure: if it
    breaks more of the examples the audit left robust, the audit stopped before its attack
    converged and its robust accuracy is too high. Runs on the first `rows` of the examples
    robust at ε (only they can change). A fresh run breaks a few of them by its new random
    start alone, hence the thresholds: warn above 2 pp, fail above 5 pp."""
    robust = [i for i, b in enumerate(broken) if b is None]
    sample = robust[:rows]
    if len(sample) < 5:
        return None
    x, y = data.x[sample].to(device), data.y[sample].to(device)
    adv = attack.doubled().run_batched(model, x, y, eps, generator=generator)
    with torch.no_grad():
        newly = int((model(adv).argmax(1) != y).sum())
    drop = newly / len(sample) * len(robust) / max(len(broken), 1)
    figures = {"attack": label, "epsilon": eps, "sample": len(sample), "newly_broken": newly,
               "estimated_accuracy_drop": drop}
    what = (f"{label} with twice the iterations breaks {newly} of {len(sample)} sampled "
            f"examples it left robust at ε={eps:g} (robust accuracy about {drop:.1%} lower)")
    if newly >= 5 and drop > 0.05:
        return _check("convergence", "fail", f"{what}: the attack had not converged; its "
                      f"figure overstates robustness, raise its steps", **figures)
    if newly >= 3 and drop > 0.02:
        return _check("convergence", "warn", f"{what}: the attack may not have converged",
                      **figures)
    return _check("convergence", "pass", what, **figures)


def _convergence_of_audit(model, data, spec, results, bounded, broken_at, norm, budget: float,
                          generator, device) -> dict | None:
    """convergence for a norm's strongest attack (by its figure at its largest ε), at the
    largest ε that leaves 10 examples robust, on as many of them as fit in `budget` passes
    and in a twentieth of what the audit surely spent on that attack."""
    candidates = [(a, lab) for a, lab in bounded if a.norm == norm and a.doubled() is not None]
    if not candidates:
        return None
    accuracy = {(r["label"], r["epsilon"]): r["accuracy"] for r in results}
    attack, label = min(candidates, key=lambda c: accuracy[(c[1], max(spec.grid(c[0])))])
    grid = [e for e in spec.grid(attack) if e > 0]
    if not grid:
        return None

    def robust_at(eps):
        return [b if b is None or b <= eps else None for b in broken_at[label]]

    # The largest ε that leaves enough robust examples to sample (the steep part of the
    # curve, where an unconverged attack shows); else the one that leaves the most.
    counts = {e: sum(b is None for b in robust_at(e)) for e in grid}
    enough = [e for e in grid if counts[e] >= 10]
    eps = max(enough) if enough else max(grid, key=lambda e: counts[e])
    broken = robust_at(eps)
    robust = counts[eps]
    # What the audit surely spent on this attack: every ε up to this one on each example
    # robust here (a cascade attacks the others only until a stage breaks them).
    runs = sum(e <= eps for e in grid)
    spent = (robust if attack.carries else len(broken)) * runs * attack.passes_per_example
    rows = int(min(SAMPLE, budget / (2 * attack.passes_per_example),
                   0.05 * spent / (2 * attack.passes_per_example)))
    return convergence(model, data, attack, label, eps, broken, rows, generator, device)


def run_checks(model, data, spec, report: dict, rounding: dict, stages: dict, *,
               device, spent: float) -> list[dict]:
    """Every applicable check, in the order docs/report.md lists them. The probes that
    attack (loss_disagreement, unbounded_epsilon: 3 × PROBE_STEPS passes per sampled example
    and norm; black_box without the audit's own Square: PROBE_QUERIES forward passes, a third
    of a pass each) run only where together they cost at most a tenth of the audit (`spent`:
    the passes it spent, robustness.evaluation.passes); the convergence check gets what is
    left of that tenth."""
    results, broken_at = report["results"], report["examples"]["broken_at"]
    generator = torch.Generator().manual_seed(spec.seed + 1)
    m = min(SAMPLE, len(data.x))
    x, y = data.x[:m].to(device), data.y[:m].to(device)
    with torch.no_grad():
        first, second = model(x), model(x)
    checks = [probabilities(first.cpu()), randomness(first.cpu(), second.cpu()),
              batch_dependence(model, x, first), vanishing_gradients(model, x, y)]
    bounded = [(a, lab) for a, lab in zip(spec.attacks, spec.attack_labels())
               if not a.minimum_norm]
    norms = sorted({a.norm for a, _ in bounded})
    per_example = (3 * PROBE_STEPS + PROBE_QUERIES / 3) * len(norms)
    budget = 0.1 * spent
    # The probes run on as many of the sample as the budget pays for, if that is enough.
    probed = min(m, int(budget // per_example))
    probing = probed >= MIN_PROBED
    budget -= per_example * probed if probing else 0
    xp, yp = x[:probed], y[:probed]
    for norm in norms:
        largest = max(e for a, _ in bounded if a.norm == norm for e in spec.grid(a))
        if probing and largest > 0:
            checks.append(loss_disagreement(model, xp, yp, norm, largest, generator))
        if probing:
            checks.append(unbounded_epsilon(model, xp, yp, norm, first.shape[1], generator))
        strongest = min((r for r in results if r["norm"] == norm and r["epsilon"] == largest
                         and any(lab == r["label"] for _, lab in bounded)),
                        key=lambda r: r["accuracy"], default=None)
        if strongest is not None and largest > 0:
            checks.append(noise_baseline(model, x, y, norm, largest, strongest["accuracy"],
                                         strongest["label"], generator))
        checks.append(_black_box_of_audit(model, x, y, first.argmax(1) == y, spec, bounded,
                                          broken_at, stages, m, norm,
                                          probed if probing else 0, generator))
        checks.append(_convergence_of_audit(model, data, spec, results, bounded, broken_at,
                                            norm, budget / len(norms), generator, device))
    pairs = [(lab_f, lab_i, a_f.norm) for a_f, lab_f in bounded if a_f.name == "fgsm"
             for a_i, lab_i in bounded if a_i.name != "fgsm" and a_i.norm == a_f.norm
             and spec.grid(a_i) == spec.grid(a_f)]
    checks += single_step_beats_iterative(broken_at, len(data.y), pairs)
    checks.append(eight_bit(sum(k for k, _ in rounding.values()),
                            sum(b for _, b in rounding.values())))
    checks.append(preprocessing(model, data, report["clean"]["accuracy"]))
    return [c for c in checks if c is not None]
