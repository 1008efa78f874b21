"""The ε-sweep: every attack of a spec at every ε of its grid, batch by batch.

Batches are the outer loop so memory stays one batch of adversarials whatever n is. Within a
batch, a bounded attack's ε grid runs in ascending order and an adversarial found at a smaller
ε is carried to every larger one (it lies inside the larger ball too), so robust accuracy never
rises with ε because of attack noise. An attack with a cheaper way over the grid (`sweep`:
FGSM's one gradient, PGD's and a cascade's breaking-ε search) runs the grid at once; without
its search a cascade (a preset), as AutoAttack does, attacks at each ε only the examples still
robust at the previous one. Minimum-norm attacks run once per batch and are thresholded at
each ε.

An audit can run in shards (`sweep_shard` on contiguous runs of whole batches, anywhere) and be
merged (`merge_shards`) into the report the unsharded audit gives, timings aside: each batch
draws its randomness from its own generator, seeded by the spec's seed and its index.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable

import torch

from robustness.batching import resolve_batch
from robustness.devices import Autocast, fast_layout, in_layout, pick_device
from robustness.errors import SpecError
from robustness.evaluation.metrics import Records
from robustness.evaluation.passes import PassCounter
from robustness.evaluation.shards import (
    AuditResult,
    Shard,
    SweepRecords,
    merge_shards,
    progress_units,
)
from robustness.memory import PeakMemory
from robustness.spec import AuditSpec

Progress = Callable[[int, int, str], None]


def check_against_data(spec: AuditSpec, x: torch.Tensor) -> None:
    """Checks that need the input size: an L2 radius beyond the box's diameter is a typo."""
    diameter = float(x[0].numel()) ** 0.5
    for i, attack in enumerate(spec.attacks):
        if attack.norm == "l2":
            too_big = [e for e in spec.grid(attack) if e > diameter]
            if too_big:
                raise SpecError(f"attacks[{i}].epsilons: L2 ε={too_big[0]} exceeds the largest "
                                f"L2 distance in [0,1]^{x[0].numel()} ({diameter:.4g})")


@torch.no_grad()
def _survive_rounding(model, x_adv, rec, clean, y, counts: tuple[int, int]) -> tuple[int, int]:
    """Add this batch's adversarials (clean-correct, now wrong) and how many of them stay
    wrong once rounded to 8-bit pixels (the eight_bit check)."""
    broken = (rec.pred != y) & (clean.pred == y)
    if not broken.any():
        return counts
    rounded = torch.round(x_adv[broken] * 255) / 255
    kept = int((model(rounded).argmax(1) != y[broken]).sum())
    return counts[0] + kept, counts[1] + int(broken.sum())


def _attack_at(attack, model, xb, yb, eps, generator, clean_logits, prev_x, prev, stage):
    """One bounded attack at one ε: (adversarial inputs, stage per example). A cascade
    attacks only the examples still robust at the previous ε and says which stage broke
    each; the others attack the whole batch."""
    if not attack.carries:
        return attack.run_batched(model, xb, yb, eps, generator=generator,
                                  clean_logits=clean_logits), stage
    x_adv, stage = prev_x.clone(), stage.clone()
    rows = torch.nonzero(prev.pred == yb).squeeze(1)
    if rows.numel():
        x_adv[rows], stage[rows] = attack.run_batched(
            model, xb[rows], yb[rows], eps, generator=generator,
            clean_logits=clean_logits[rows], traced=True)
    return x_adv, stage


def _stage_as_recorded(stage, prev_stage, rec, clean, y):
    """A searched cascade's stages as the float32 records have it: a broken example keeps
    the stage of the smallest ε it broke at (as a cascade run ε by ε does), a robust one
    (or one wrong from the start) has none."""
    broken = (rec.pred != y) & (clean.pred == y)
    stage = torch.where(prev_stage >= 0, prev_stage, stage)
    return torch.where(broken, stage, torch.full_like(stage, -1))


def run_sweep(model, data, spec: AuditSpec, *, device=None, progress: Progress | None = None,
              collect_adversarial: bool = False, model_info: dict | None = None,
              layout: torch.memory_format | None = None,
              batch_limit: int | None = None) -> AuditResult:
    """Audit `model` (inputs in [0,1], logits out) on `data` (x, y, indices, description).
    The provenance's `memory` holds the audit's peak memory (robustness.memory), its
    `batch_size` how the batch was chosen (robustness.batching: the spec's, or the largest
    that fits when the spec leaves it unset, and no more than `batch_limit`). `layout`: the
    memory format of the model (converted in place) and batches (`fast_layout`:
    channels-last on CUDA)."""
    check_against_data(spec, data.x)
    device = pick_device(device) if not isinstance(device, torch.device) else device
    started = time.perf_counter()
    with PeakMemory(device) as memory:
        spec, batch = resolve_batch(spec, model, data.x, device, batch_limit)
        shard = sweep_shard(model, data, spec, 0, len(data.x), device=device,
                            progress=progress, collect_adversarial=collect_adversarial,
                            layout=layout)
        result = merge_shards(model, data, spec, [shard], device=device,
                              model_info=model_info, started=started,
                              collect_adversarial=collect_adversarial, batch=batch)
    result.report["provenance"]["memory"] = memory.figures()
    return result


def _generator(spec: AuditSpec, batch: int) -> torch.Generator:
    return torch.Generator().manual_seed((spec.seed * 1_000_003 + batch) % 2**63)


def sweep_shard(plain_model, data, spec: AuditSpec, start: int, stop: int, *, device,
                progress: Progress | None = None, collect_adversarial: bool = False,
                layout: torch.memory_format | None = None) -> Shard:
    """Every attack of the spec on examples [start, stop), which must begin on a batch
    boundary (`shard_ranges`). The attacks see `attacked` (under AMP with precision amp);
    every record is taken from the float32 `model`."""
    if spec.batch_size is None:
        raise ValueError("a shard runs with a resolved batch_size (robustness.batching)")
    if start % spec.batch_size:
        raise ValueError(f"a shard starts on a batch boundary, not at example {start}")
    device = pick_device(device) if not isinstance(device, torch.device) else device
    layout = fast_layout(device) if layout is None else layout
    if layout != torch.contiguous_format:
        plain_model = plain_model.to(memory_format=layout)
    model = PassCounter(plain_model)
    attacked = model if spec.precision == "fp32" else Autocast(model, device.type)
    labels = spec.attack_labels()
    batches = [(s, min(s + spec.batch_size, stop)) for s in range(start, stop, spec.batch_size)]
    total, done = progress_units(spec, start, stop), 0
    clean_parts: list[Records] = []
    adv_parts: dict[tuple[str, float], list[Records]] = defaultdict(list)
    adv_inputs: dict[tuple[str, float], list[torch.Tensor]] = defaultdict(list)
    norm_parts: dict[str, list[torch.Tensor]] = defaultdict(list)
    stage_parts: dict[tuple[str, float], list[torch.Tensor]] = defaultdict(list)
    seconds: dict[str, float] = defaultdict(float)
    rounding: dict[str, tuple[int, int]] = {}

    def tick(phase: str):
        nonlocal done
        done += 1
        if progress:
            progress(done, total, phase)

    def keep(label, eps, rec: Records, xb_adv):
        adv_parts[(label, eps)].append(rec.to("cpu"))
        if collect_adversarial:
            adv_inputs[(label, eps)].append(xb_adv.detach().cpu())

    for lo, hi in batches:
        b = lo // spec.batch_size
        generator = _generator(spec, b)
        xb = in_layout(data.x[lo:hi].to(device), layout)
        yb = data.y[lo:hi].to(device)
        with torch.no_grad():
            clean_logits = model(xb)
        clean = Records.from_logits(clean_logits, yb, xb, xb, spec.top_k)
        clean_parts.append(clean.to("cpu"))
        for attack, label in zip(spec.attacks, labels):
            t0 = time.perf_counter()
            where = f"{label} batch {b + 1}/{-(-len(data.x) // spec.batch_size)}"
            if attack.minimum_norm:
                x_min, found = attack.run_batched(attacked, xb, yb, None, generator=generator,
                                                  clean_logits=clean_logits)
                with torch.no_grad():
                    found_rec = Records.from_logits(model(x_min), yb, x_min, xb, spec.top_k)
                # Found means wrong in the float32 records (an AMP attack's own verdict may
                # differ at the boundary it stops on).
                found = found & ((found_rec.pred != yb) | (clean.pred != yb))
                size = (found_rec.l2 if attack.norm == "l2" else found_rec.linf).clone()
                size[~found] = float("inf")
                size[clean.pred != yb] = 0.0
                norm_parts[label].append(size.cpu())
                for eps in spec.grid(attack):
                    broken = (size <= eps) & found
                    keep(label, eps, found_rec.select(broken, clean),
                         torch.where(broken.view(-1, 1, 1, 1), x_min, xb))
                tick(where)
            else:
                prev_x, prev = xb, clean
                stage = torch.full((len(yb),), -1, dtype=torch.long, device=device)
                grid = spec.grid(attack)
                swept = attack.sweep(attacked, xb, yb, grid, generator=generator,
                                     clean_logits=clean_logits)
                swept_stage = None
                if isinstance(swept, tuple):  # a cascade's: the stage that broke each, too
                    swept, swept_stage = swept
                prev_stage = stage
                for i, eps in enumerate(grid):
                    if eps == 0:
                        x_adv, rec = xb, clean
                    else:
                        if swept is not None:
                            x_adv = swept[i]
                            if swept_stage is not None:
                                stage = swept_stage[i]
                        else:
                            x_adv, stage = _attack_at(attack, attacked, xb, yb, eps, generator,
                                                      clean_logits, prev_x, prev, stage)
                        with torch.no_grad():
                            rec = Records.from_logits(model(x_adv), yb, x_adv, xb, spec.top_k)
                        carry = (prev.pred != yb) & (rec.pred == yb)
                        rec = prev.select(carry, rec)
                        x_adv = torch.where(carry.view(-1, 1, 1, 1), prev_x, x_adv)
                        if swept_stage is not None:
                            stage = _stage_as_recorded(stage, prev_stage, rec, clean, yb)
                    if attack.carries:
                        stage_parts[(label, eps)].append(stage.cpu())
                    keep(label, eps, rec, x_adv)
                    prev_x, prev, prev_stage = x_adv, rec, stage
                    tick(f"{where} ε={eps:g}")
                rounding[label] = _survive_rounding(model, prev_x, prev, clean, yb,
                                                    rounding.get(label, (0, 0)))
            seconds[label] += time.perf_counter() - t0

    records = SweepRecords(
        clean=Records.cat(clean_parts),
        adversarial={k: Records.cat(v) for k, v in adv_parts.items()},
        minimal_norm={k: torch.cat(v) for k, v in norm_parts.items()},
        seconds=dict(seconds), stages={k: torch.cat(v) for k, v in stage_parts.items()})
    return Shard(start=start, stop=stop, records=records, rounding=rounding,
                 rows=tuple(model.rows),
                 adversarial={k: torch.cat(v) for k, v in adv_inputs.items()})
