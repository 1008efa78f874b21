"""The breaking-ε search: an ε-sweep of one bounded attack that attacks each example only where
the answer is still open, instead of at every ε of the grid.

An adversarial found at ε lies inside every larger ball, so an example broken at ε is broken
at every larger ε; one robust at ε is taken as robust at every smaller one (an ε-by-ε audit
agrees, bar the luck of a random start, which cuts both ways). What is left to find is each
example's breaking ε, the smallest ε of the grid at which the attack breaks it:

1. Every example is attacked at the largest ε, and each one stops as soon as it is broken
   (`probe`). Robust there: robust at every ε, done. A robust model's examples cost one attack.
2. A broken example is attacked again at that ε from δ = 0, stopping at the first break
   (`shrink`): the perturbation grows step by step, so that break is a small one. Both
   adversarials, projected into each smaller ball (a forward pass each), show the smallest
   ε at which the example still breaks: that is the new upper bound.
3. The example is attacked at the ε just below the bound: robust ends its search, broken
   lowers the bound and step 2 repeats.

So each example ends with exactly one attack that runs to the end without breaking it, the
one an ε-by-ε audit cannot avoid either; the others stop early, and most of the grid is
settled by forward passes.

What each ε reports (the per-example records):

- below the breaking ε, the robust attack's last point projected into that ball (evaluated:
  should it be misclassified, that break is real and carries upward as any other);
- at and above it, the breaking adversarial pushed on by `refine` (for PGD, 3 steps towards
  the wrong class it is taken for, at that ε, from the previous ε's adversarial), keeping
  the most confidently wrong point. The confidence at ε is therefore that of a short
  targeted attack warm-started from the breaking adversarial, not of a full attack from
  scratch; `"search": false` buys the latter at the full price.

A cascade (`CascadeSpec.sweep`) is a probe too dear to spend where an example breaks at a
smaller ε anyway: there the shrinking PGD runs first on every example (`shrink_first`), so
the cascade starts just below the break it found.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from robustness.attacks.losses import margin
from robustness.attacks.threat import threat_model

# probe(rows, eps) -> adversarial inputs for those rows (ε: one per row), each stopped at its
# first break; shrink: the same from δ = 0 (a small break, if any);
# refine(rows, eps, x_start) -> adversarial inputs at least as wrong as x_start (one ε),
# more confidently so.
Probe = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Refine = Callable[[torch.Tensor, float, torch.Tensor], torch.Tensor]


def breaking_search(model, x: torch.Tensor, y: torch.Tensor, grid: list[float], norm: str, *,
                    probe: Probe, shrink: Probe | None, refine: Refine | None,
                    clean_logits: torch.Tensor, shrink_first: bool = False
                    ) -> list[torch.Tensor]:
    """Adversarial inputs at each ε of the ascending `grid` (see the module's docstring).
    Each round attacks every open example at once, each at its own ε. Without `shrink`,
    only the probe's adversarial is projected down the grid; without `refine`, the point
    reported at an ε from the breaking one up is the most wrong of those found there and at
    the ε below. `shrink_first` runs `shrink` on every example at the largest ε before any
    probe: a cheap upper bound on each breaking ε, for a probe too dear to spend where the
    example breaks at a smaller ε anyway (a cascade)."""
    n, count, dev = len(grid), x.shape[0], x.device
    eps = torch.tensor(grid, dtype=x.dtype, device=dev)
    with torch.no_grad():
        clean_m = margin(clean_logits, y)
    # Per grid index and example: the point reported there and its margin.
    best_x = x.unsqueeze(0).repeat(n, *([1] * x.dim()))
    best_m = clean_m.unsqueeze(0).repeat(n, 1)
    # Per example: the largest grid index known robust, the smallest known broken.
    lo = torch.full((count,), -1, dtype=torch.long, device=dev)
    hi = torch.full((count,), n, dtype=torch.long, device=dev)
    lo[clean_m <= 0] = max((j for j, e in enumerate(grid) if e == 0), default=-1)
    hi[clean_m > 0] = 0

    def record(at: torch.Tensor, rows: torch.Tensor, x_new: torch.Tensor) -> torch.Tensor:
        """Keep x_new at grid index `at` (per row) where it is more wrong; its margins."""
        with torch.no_grad():
            m = margin(model(x_new), y[rows])
        better = m > best_m[at, rows]
        best_x[at[better], rows[better]] = x_new[better]
        best_m[at[better], rows[better]] = m[better]
        return m

    def projected(rows: torch.Tensor, x_from: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
        xs = x[rows]
        return xs + threat_model(norm, eps[at]).clip(xs, x_from - xs)

    def line_search(rows: torch.Tensor, at: torch.Tensor, points: list[torch.Tensor]):
        """Lower each row's known breaking ε (below `at`) to the smallest grid ε at which one
        of its `points`, projected into that ball, is still misclassified."""
        for k in range(int(at.max()) - 1, -1, -1):
            inside = (lo[rows] < k) & (at > k)
            if not inside.any():
                continue
            sub, to = rows[inside], torch.full((int(inside.sum()),), k, device=dev)
            for found in points:
                still = record(to, sub, projected(sub, found[inside], to)) > 0
                hi[sub[still]] = torch.minimum(hi[sub[still]], to[still])

    # Per example, the grid index `shrink` last ran at: it starts from δ = 0 without
    # randomness, so it is never run twice at one ε.
    shrunk = torch.full((count,), -1, dtype=torch.long, device=dev)
    if shrink_first and shrink is not None:
        rows = torch.nonzero(hi - lo > 1).squeeze(1)
        if rows.numel():
            at = hi[rows] - 1
            small = shrink(rows, eps[at])
            shrunk[rows] = at
            broken = record(at, rows, small) > 0
            rows, at, small = rows[broken], at[broken], small[broken]
            hi[rows] = at
            if rows.numel():
                line_search(rows, at, [small])
    while True:
        rows = torch.nonzero(hi - lo > 1).squeeze(1)
        if rows.numel() == 0:
            break
        at = hi[rows] - 1
        x_adv = probe(rows, eps[at])
        broken = record(at, rows, x_adv) > 0
        lo[rows[~broken]] = at[~broken]
        rows, at, x_adv = rows[broken], at[broken], x_adv[broken]
        hi[rows] = at
        narrow = lo[rows] < at - 1  # a smaller ε is still open
        rows, at, x_adv = rows[narrow], at[narrow], x_adv[narrow]
        if rows.numel() == 0:
            continue
        found_points = [x_adv]
        fresh = shrunk[rows] != at
        if shrink is not None and fresh.any():
            small = x_adv.clone()
            small[fresh] = shrink(rows[fresh], eps[at[fresh]])
            shrunk[rows[fresh]] = at[fresh]
            record(at[fresh], rows[fresh], small[fresh])
            found_points.append(small)
        line_search(rows, at, found_points)
    # Below the breaking ε: the robust probe's point, projected into each smaller ball.
    for j in range(n - 2, -1, -1):
        rows = torch.nonzero(lo > j).squeeze(1)
        if rows.numel() and grid[j] > 0:
            to = torch.full((rows.numel(),), j, device=dev)
            record(to, rows, projected(rows, best_x[j + 1, rows], to))
    # At and above it: the adversarial, pushed on at each ε from the previous one.
    for j in range(n):
        rows = torch.nonzero((hi <= j) & (clean_m <= 0)).squeeze(1)
        if rows.numel() == 0 or grid[j] == 0:
            continue
        start = best_x[j, rows]
        if j > 0:
            prev = best_m[j - 1, rows] > best_m[j, rows]
            start[prev] = best_x[j - 1, rows[prev]]
        pushed = start if refine is None else refine(rows, grid[j], start)
        record(torch.full((rows.numel(),), j, device=dev), rows, pushed)
    return list(best_x.unbind(0))
