"""One audit in shards: each shard anywhere, any order, stored as bytes, merged into the report
the unsharded audit gives (timings aside)."""

import json
import random
from types import SimpleNamespace

import pytest
import torch

from robustness.evaluation import run_sweep
from robustness.evaluation.shards import (
    merge_shards,
    shard_from_bytes,
    shard_ranges,
    shard_to_bytes,
)
from robustness.evaluation.sweep import sweep_shard
from robustness.spec import parse_audit_spec

SPEC = {"dataset": {"name": "digits", "split": "test", "n": 230},
        "attacks": [{"name": "fgsm"}, {"name": "pgd", "steps": 10},
                    {"name": "deepfool", "steps": 10, "epsilons": [0.0, 0.5, 1.0]},
                    {"name": "cascade", "preset": "quick", "epsilons": [0.1, 0.2]}],
        "epsilons": [0.0, 0.05, 0.1, 0.2], "batch_size": 40, "seed": 3}
TIMINGS = {"seconds", "attack_seconds", "checks_seconds", "memory", "shards", "finished_at"}


def _without_timings(report: dict) -> str:
    out = dict(report)
    out["provenance"] = {k: v for k, v in report["provenance"].items() if k not in TIMINGS}
    return json.dumps(out, sort_keys=True)


def test_shard_ranges_are_whole_batches_covering_every_example_once():
    assert shard_ranges(230, 40, 3) == [(0, 80), (80, 160), (160, 230)]
    assert shard_ranges(230, 40, 100) == [(i, min(i + 40, 230)) for i in range(0, 230, 40)]
    assert shard_ranges(10, 40, 4) == [(0, 10)]


def test_a_sharded_audit_is_the_unsharded_one(digits_model, digits):
    _, test = digits
    data = SimpleNamespace(x=test.x[:230], y=test.y[:230], indices=test.indices[:230],
                           description={"name": "digits", "split": "test", "n": 230})
    spec = parse_audit_spec(SPEC)
    whole = run_sweep(digits_model, data, spec, device="cpu", collect_adversarial=True)
    shards = [sweep_shard(digits_model, data, spec, lo, hi, device=torch.device("cpu"),
                          collect_adversarial=True)
              for lo, hi in shard_ranges(230, spec.batch_size, 3)]
    random.Random(0).shuffle(shards)  # they finish in any order
    # ...on other machines: each comes back through its bytes (safetensors, no pickle).
    shards = [shard_from_bytes(shard_to_bytes(sh)) for sh in shards]
    merged = merge_shards(digits_model, data, spec, shards, device=torch.device("cpu"),
                          collect_adversarial=True)
    # A report worth comparing: attacks that break some examples and not others.
    accuracies = [r["accuracy"] for r in whole.report["results"]]
    assert min(accuracies) < 0.5 < max(accuracies)
    assert _without_timings(merged.report) == _without_timings(whole.report)
    assert merged.report["provenance"]["shards"] == 3
    assert merged.adversarial.keys() == whole.adversarial.keys()
    for key, x_adv in whole.adversarial.items():
        assert torch.equal(merged.adversarial[key], x_adv)
    with pytest.raises(ValueError, match="do not cover"):
        merge_shards(digits_model, data, spec, shards[:2], device=torch.device("cpu"))
    with pytest.raises(ValueError, match="batch boundary"):
        sweep_shard(digits_model, data, spec, 30, 80, device=torch.device("cpu"))
