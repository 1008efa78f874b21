"""An audit in pieces: the per-example records of contiguous runs of whole batches (`Shard`,
made by `robustness.evaluation.sweep.sweep_shard` anywhere), their bytes for the artifact
store, and their merge into the report the unsharded audit gives, timings aside.

Shards can be merged because nothing in an audit couples batches: each batch's random stream
is seeded by the spec's seed and the batch's index, and everything that spans examples (the
aggregates, per-class figures, validity checks, gate) is computed once, at the merge.
"""

from __future__ import annotations

import json
import struct
import time
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import pairwise

import torch

from robustness.batching import BatchChoice
from robustness.evaluation.checks import run_checks
from robustness.evaluation.gate import evaluate_gate
from robustness.evaluation.metrics import Records
from robustness.evaluation.passes import passes as count_passes
from robustness.evaluation.per_class import per_class
from robustness.evaluation.report import build_report
from robustness.spec import AuditSpec


@dataclass
class SweepRecords:
    """Everything the report is built from, per example, on the CPU."""

    clean: Records
    adversarial: dict[tuple[str, float], Records]
    minimal_norm: dict[str, torch.Tensor]
    seconds: dict[str, float]
    # (cascade label, ε) -> per example, the index of the stage that broke it, or -1.
    stages: dict[tuple[str, float], torch.Tensor] = field(default_factory=dict)


@dataclass
class AuditResult:
    report: dict
    # (attack label, ε) -> adversarial inputs on the CPU, when asked for.
    adversarial: dict[tuple[str, float], torch.Tensor] = field(default_factory=dict)
    # The clean inputs the report's examples are, when the adversarial ones were asked for.
    clean: torch.Tensor | None = None


@dataclass
class Shard:
    """An audit's work on one contiguous run of whole batches: what the merge needs of it.
    Each batch's random stream is seeded by the spec's seed and the batch's index, so a shard
    computes exactly what the unsharded audit computes on those batches."""

    start: int
    stop: int
    records: SweepRecords
    # per bounded attack, at its largest ε: (adversarials still adversarial at 8 bits, all)
    rounding: dict[str, tuple[int, int]]
    # the model's input rows: (forwards for an input gradient, other forwards)
    rows: tuple[int, int]
    # (attack label, ε) -> adversarial inputs on the CPU, when asked for.
    adversarial: dict[tuple[str, float], torch.Tensor] = field(default_factory=dict)


def progress_units(spec: AuditSpec, start: int, stop: int) -> int:
    """The progress units of examples [start, stop): batches × attack runs per batch."""
    batches = -(-(stop - start) // spec.batch_size)
    return batches * sum(a.runs(spec.grid(a)) for a in spec.attacks)


def shard_ranges(n: int, batch_size: int, shards: int) -> list[tuple[int, int]]:
    """At most `shards` contiguous example ranges of whole batches, as even as batches allow."""
    batches = max(1, -(-n // batch_size))
    shards = max(1, min(shards, batches))
    edges = [round(i * batches / shards) * batch_size for i in range(shards + 1)]
    return [(lo, min(hi, n)) for lo, hi in pairwise(edges) if lo < min(hi, n)] \
        or [(0, n)]


def shard_to_bytes(shard: Shard) -> bytes:
    """A shard as safetensors bytes (tensors only, nothing executable), its keys and counts
    in the header's metadata: what a worker stores for the one that merges."""
    from safetensors.torch import save

    r = shard.records
    tensors: dict[str, torch.Tensor] = {}

    def put(prefix: str, rec: Records):
        for name, value in rec.__dict__.items():
            tensors[f"{prefix}.{name}"] = value.contiguous()

    put("clean", r.clean)
    adversarial = list(r.adversarial)
    for i, key in enumerate(adversarial):
        put(f"adversarial.{i}", r.adversarial[key])
        if key in shard.adversarial:
            tensors[f"inputs.{i}"] = shard.adversarial[key].contiguous()
    norms, stages = list(r.minimal_norm), list(r.stages)
    for i, label in enumerate(norms):
        tensors[f"minimal_norm.{i}"] = r.minimal_norm[label].contiguous()
    for i, key in enumerate(stages):
        tensors[f"stages.{i}"] = r.stages[key].contiguous()
    head = {"start": shard.start, "stop": shard.stop, "rows": list(shard.rows),
            "rounding": shard.rounding, "seconds": r.seconds, "adversarial": adversarial,
            "minimal_norm": norms, "stages": stages}
    return save(tensors, metadata={"shard": json.dumps(head)})


def shard_from_bytes(data: bytes) -> Shard:
    from safetensors.torch import load

    (size,) = struct.unpack("<Q", data[:8])
    head = json.loads(json.loads(data[8:8 + size])["__metadata__"]["shard"])
    tensors = load(data)

    def get(prefix: str) -> Records:
        return Records(**{name: tensors[f"{prefix}.{name}"] for name in Records.__annotations__})

    adversarial = [tuple(k) for k in head["adversarial"]]
    records = SweepRecords(
        clean=get("clean"),
        adversarial={key: get(f"adversarial.{i}") for i, key in enumerate(adversarial)},
        minimal_norm={label: tensors[f"minimal_norm.{i}"]
                      for i, label in enumerate(head["minimal_norm"])},
        seconds=head["seconds"],
        stages={tuple(key): tensors[f"stages.{i}"] for i, key in enumerate(head["stages"])})
    return Shard(start=head["start"], stop=head["stop"], records=records,
                 rounding={k: tuple(v) for k, v in head["rounding"].items()},
                 rows=tuple(head["rows"]),
                 adversarial={key: tensors[f"inputs.{i}"] for i, key in enumerate(adversarial)
                              if f"inputs.{i}" in tensors})


def merge_shards(model, data, spec: AuditSpec, shards: list[Shard], *, device,
                 model_info: dict | None = None, started: float | None = None,
                 collect_adversarial: bool = False,
                 batch: BatchChoice | None = None) -> AuditResult:
    """The audit's report from its shards (in any order; together they must cover the
    examples once): records joined in example order, then the report, per-class figures,
    validity checks and gate over all of them, as if one process had run it all. `batch`:
    how the spec's batch_size was chosen, for the provenance (default: the spec's own)."""
    started = time.perf_counter() if started is None else started
    shards = sorted(shards, key=lambda sh: sh.start)
    edges = [(sh.start, sh.stop) for sh in shards]
    if edges[0][0] != 0 or edges[-1][1] != len(data.x) or \
            any(a[1] != b[0] for a, b in pairwise(edges)):
        raise ValueError(f"shards {edges} do not cover examples 0–{len(data.x)} once")
    parts = [sh.records for sh in shards]
    seconds: dict[str, float] = defaultdict(float)
    rounding: dict[str, tuple[int, int]] = {}
    for sh in shards:
        for label, t in sh.records.seconds.items():
            seconds[label] += t
        for label, (kept, all_) in sh.rounding.items():
            k0, a0 = rounding.get(label, (0, 0))
            rounding[label] = (k0 + kept, a0 + all_)
    records = SweepRecords(
        clean=Records.cat([r.clean for r in parts]),
        adversarial={k: Records.cat([r.adversarial[k] for r in parts])
                     for k in parts[0].adversarial},
        minimal_norm={k: torch.cat([r.minimal_norm[k] for r in parts])
                      for k in parts[0].minimal_norm},
        seconds=dict(seconds),
        stages={k: torch.cat([r.stages[k] for r in parts]) for k in parts[0].stages})
    passes = count_passes([sum(sh.rows[i] for sh in shards) for i in (0, 1)])
    n = data.x.shape[0]
    report = build_report(spec, data, records, device=device, model_info=model_info or {},
                          seconds=time.perf_counter() - started)
    report["provenance"]["passes_per_example"] = passes / max(n, 1)
    report["provenance"]["shards"] = len(shards)
    report["provenance"]["batch_size"] = (
        batch or BatchChoice(value=spec.batch_size, chosen="spec")).provenance()
    meta = getattr(model, "metadata", None)
    report["per_class"] = per_class(report, meta.num_classes if meta else
                                    int(data.y.max()) + 1, meta.labels if meta else None)
    t0 = time.perf_counter()
    report["checks"] = run_checks(model, data, spec, report, rounding, records.stages,
                                  device=device, spent=passes)
    report["provenance"]["checks_seconds"] = time.perf_counter() - t0
    report["provenance"]["seconds"] = time.perf_counter() - started
    if spec.gate:  # after the checks, which a gate rule may name
        report["gate"] = evaluate_gate(spec.gate, report)
    adversarial = {k: torch.cat([sh.adversarial[k] for sh in shards])
                   for k in shards[0].adversarial} if collect_adversarial else {}
    return AuditResult(report=report, adversarial=adversarial,
                       clean=data.x.detach().cpu() if collect_adversarial else None)
