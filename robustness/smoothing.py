"""Randomized smoothing (Cohen, Rosenfeld & Kolter 2019): a certified lower bound on L2
robustness for any classifier.

The smoothed classifier g(x) = argmax_c P(f(x + δ) = c), δ ~ N(0, σ²I), is robust within
radius σ·Φ⁻¹(p_A) around x when its top class has probability p_A. `certify` and `predict` are
the paper's CERTIFY and PREDICT: p_A is never known, only bounded below from Monte-Carlo counts
(one-sided Clopper-Pearson at confidence 1 − α), so a certificate is wrong with probability at
most α. The noise is added to inputs in [0, 1], before the model's own preprocessing, and is not
clipped to the box (the certificate is about f on all of R^d).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Progress = Callable[[int, int, str], None]


def lower_confidence_bound(count: int, n: int, alpha: float) -> float:
    """One-sided Clopper-Pearson lower bound on a binomial proportion at confidence 1 − α."""
    from scipy.stats import beta

    return 0.0 if count == 0 else float(beta.ppf(alpha, count, n - count + 1))


def radius(p_lower: float, sigma: float) -> float:
    """Certified L2 radius σ·Φ⁻¹(p_A lower bound); meaningful only above 1/2."""
    from scipy.stats import norm

    return float(sigma * norm.ppf(p_lower))


def auto_batch(shape: tuple[int, ...], num: int, budget_floats: int = 1 << 22) -> int:
    """Noisy copies of one input per forward pass: as many as a 16 MiB input tensor holds
    (e.g. 5,349 MNIST images), which keeps the activations of small CNNs within memory."""
    numel = 1
    for d in shape:
        numel *= d
    return max(1, min(num, budget_floats // numel))


def sample_counts(model, x: torch.Tensor, sigma: float, num: int, num_classes: int,
                  batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """How often the model predicts each class on `num` noisy copies of one input `x` [C,H,W]
    (a tensor of `num_classes` int64 counts). Exactly `num` forward passes."""
    counts = torch.zeros(num_classes, dtype=torch.int64, device=x.device)
    left = num
    with torch.inference_mode():
        while left > 0:
            b = min(batch_size, left)
            noise = torch.randn((b, *x.shape), generator=generator, device=x.device,
                                dtype=x.dtype)
            pred = model(x.unsqueeze(0) + sigma * noise).argmax(dim=1)
            counts += torch.bincount(pred, minlength=num_classes)[:num_classes]
            left -= b
    return counts


@dataclass
class Certificate:
    pred: int            # -1 when abstaining
    abstain: bool
    radius: float        # 0 when abstaining
    p_lower: float       # lower confidence bound on p_A for the selected class
    count: int           # estimation samples (of n) predicted as the selected class
    top_classes: list[int]  # under noise, by estimation counts
    top_counts: list[int]


def generator_for(seed: int, index: int, device: torch.device) -> torch.Generator:
    """One stream per example, so an example's noise does not depend on which examples, or
    how many, were certified before it."""
    return torch.Generator(device=device).manual_seed((seed * 1_000_003 + index) % (2**63))


def certify(model, x: torch.Tensor, sigma: float, n0: int, n: int, alpha: float,
            num_classes: int, batch_size: int | None = None,
            generator: torch.Generator | None = None, top_k: int = 3) -> Certificate:
    """CERTIFY: pick the top class on n0 samples, bound its probability on n fresh ones."""
    generator = generator or torch.Generator(device=x.device).manual_seed(0)
    batch = batch_size or auto_batch(tuple(x.shape), max(n0, n))
    selection = sample_counts(model, x, sigma, n0, num_classes, batch, generator)
    top = int(selection.argmax())
    counts = sample_counts(model, x, sigma, n, num_classes, batch, generator)
    count = int(counts[top])
    p_lower = lower_confidence_bound(count, n, alpha)
    ranked = torch.argsort(counts.cpu(), descending=True, stable=True)[:top_k]
    abstain = p_lower <= 0.5
    return Certificate(pred=-1 if abstain else top, abstain=abstain,
                       radius=0.0 if abstain else radius(p_lower, sigma), p_lower=p_lower,
                       count=count, top_classes=[int(c) for c in ranked],
                       top_counts=[int(counts[c]) for c in ranked])


def predict(model, x: torch.Tensor, sigma: float, n: int, alpha: float, num_classes: int,
            batch_size: int | None = None,
            generator: torch.Generator | None = None) -> int:
    """PREDICT: the top class if a two-sided binomial test tells it from the runner-up at
    level α, else -1 (abstain). Wrong with probability at most α when it answers."""
    from scipy.stats import binomtest

    generator = generator or torch.Generator(device=x.device).manual_seed(0)
    counts = sample_counts(model, x, sigma, n, num_classes,
                           batch_size or auto_batch(tuple(x.shape), n), generator).cpu()
    top2 = torch.topk(counts, 2)
    n_a, n_b = int(top2.values[0]), int(top2.values[1])
    if binomtest(n_a, n_a + n_b, 0.5).pvalue > alpha:
        return -1
    return int(top2.indices[0])


@dataclass
class Certified:
    """Every example's certificate, in the columnar form audits use for examples."""

    index: list[int]
    label: list[int]
    pred: list[int]
    abstain: list[bool]
    radius: list[float]
    p_lower: list[float]
    count: list[int]
    top_classes: list[list[int]]
    top_counts: list[list[int]]
    forward_passes: int
    seconds: float


def certify_all(model, x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor, *,
                sigma: float, n0: int, n: int, alpha: float, num_classes: int,
                batch_size: int | None = None, seed: int = 0, top_k: int = 3,
                device: torch.device | None = None,
                progress: Progress | None = None) -> Certified:
    """CERTIFY on each example; progress after each. Examples are seeded by their index in
    the split (`indices`), so a subset certifies each of its examples as the full set does."""
    import time

    device = device or x.device
    started = time.perf_counter()
    columns: dict[str, list] = {k: [] for k in ("pred", "abstain", "radius", "p_lower",
                                                  "count", "top_classes", "top_counts")}
    total = len(y)
    for i in range(total):
        cert = certify(model, x[i].to(device), sigma, n0, n, alpha, num_classes, batch_size,
                       generator_for(seed, int(indices[i]), device), top_k)
        for key, column in columns.items():
            column.append(getattr(cert, key))
        if progress:
            progress(i + 1, total, f"certify example {i + 1}/{total}")
    return Certified(index=[int(i) for i in indices], label=[int(v) for v in y],
                     forward_passes=total * (n0 + n),
                     seconds=time.perf_counter() - started, **columns)


class _NoisyProbabilities(torch.nn.Module):
    def __init__(self, model, sigma: float, generator: torch.Generator):
        super().__init__()
        self.model, self.sigma, self.generator = model, sigma, generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(x.shape, generator=self.generator, device=x.device, dtype=x.dtype)
        return torch.softmax(self.model(x + self.sigma * noise), dim=1)


def soft_smoothed(model, sigma: float, draws: int, generator: torch.Generator):
    """The smoothed soft classifier as a model: log of the model's softmax averaged over
    `draws` noise draws (Salman et al. 2019), whose gradient, unlike the hard smoothed
    classifier's, exists; any gradient attack then attacks the smoothed classifier."""
    from robustness.attacks.eot import expectation

    mean = expectation(_NoisyProbabilities(model, sigma, generator), draws)
    return lambda x: mean(x).clamp_min(1e-30).log()


def attack_smoothed(model, x: torch.Tensor, y: torch.Tensor, *, sigma: float, radius: float,
                    steps: int, draws: int, generator: torch.Generator) -> torch.Tensor:
    """SmoothAdv's PGD (Salman et al. 2019): L2 PGD within `radius` on the cross-entropy of the
    soft smoothed classifier, its gradient a Monte-Carlo estimate over `draws` draws a step.
    One PGD loop (`attacks.pgd.ascend`) serves it as it serves every norm."""
    from robustness.attacks.losses import cross_entropy
    from robustness.attacks.pgd import ascend
    from robustness.attacks.threat import threat_model

    if radius == 0:
        return x
    delta = ascend(soft_smoothed(model, sigma, draws, generator), x, y,
                   threat_model("l2", radius), torch.zeros_like(x), steps=steps,
                   step_size=2.5 * radius / steps, objective=cross_entropy)
    return (x + delta).detach()


def smoothed_predictions(model, x: torch.Tensor, *, sigma: float, n: int, num_classes: int,
                         batch_size: int, generators: list[torch.Generator]) -> list[int]:
    """The smoothed classifier's class (the most frequent on `n` draws) at each row of x."""
    return [int(sample_counts(model, row, sigma, n, num_classes, batch_size, g).argmax())
            for row, g in zip(x, generators)]


def certified_accuracy(result: Certified, radii: list[float]) -> list[dict]:
    """Fraction of examples classified correctly with a certified radius of at least r."""
    total = max(1, len(result.label))
    return [{"radius": r,
             "accuracy": sum(1 for p, y, a, rad in zip(result.pred, result.label,
                                                        result.abstain, result.radius)
                             if not a and p == y and rad >= r) / total}
            for r in radii]
