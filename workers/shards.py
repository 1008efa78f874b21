"""Sharded audits on the workers: one audit spread over every worker that is free.

An audit of more than `shard_examples` examples runs in shards of whole batches
(`robustness.evaluation.shards`). The worker that runs the audit's job coordinates it: it
records the shards (`store.shards`, the database is the one place that says which are done),
publishes one task per shard, and runs shards itself like any other worker, lowest index
first, until none is left to claim. Then it waits for the shards other workers hold, claims
again any whose worker stopped heartbeating (a lost worker costs that shard, not the audit),
and merges them into the report the unsharded audit gives, timings aside.

A shard task (`run_shard_task`) claims its shard in the worker process, which keeps the
shard's heartbeat, and runs it in the sandbox like a job (`workers.runners.run_audit_shard`).
Should the coordinator die, its job is redelivered after its lease and the next coordinator
finds the shards finished so far.
"""

from __future__ import annotations

import logging
import math
import threading
import time

from robustness.errors import RobustnessError
from store import shards as store_shards
from store.db import ShardRecord

log = logging.getLogger(__name__)
# How often a coordinator with nothing left to claim looks at the shards others hold.
WAIT_SECONDS = 0.5


class ShardFailed(RobustnessError):
    """A shard failed for a reason the library named: its audit fails with it."""


def shard_count(settings, n: int) -> int:
    """How many shards an audit of n examples runs in (1: not sharded)."""
    if settings.shard_examples <= 0 or n <= settings.shard_examples:
        return 1
    return math.ceil(n / settings.shard_examples)


class ShardBeat(threading.Thread):
    """Touches a claimed shard's row with its progress every `seconds`; a touch that fails
    (claim lost, audit cancelled or ended) is the reason to stop."""

    def __init__(self, db, job_id: str, index: int, token: str, seconds: float):
        super().__init__(daemon=True, name=f"shard-{job_id}-{index}")
        self.db, self.job_id, self.index, self.token = db, job_id, index, token
        self.seconds = seconds
        self.state: dict = {}
        self.stop_reason: str | None = None
        self.done = threading.Event()
        self.lock = threading.Lock()

    def progress(self, done: int, total: int, phase: str) -> None:
        with self.lock:
            self.state.update(progress_completed=done, progress_total=total)

    def record(self, **_) -> None:
        """A shard records nothing but its progress."""

    def stop_requested(self) -> str | None:
        return self.stop_reason

    def beat(self) -> None:
        with self.lock:
            values = dict(self.state)
        if not store_shards.touch(self.db, self.job_id, self.index, self.token, **values):
            self.stop_reason = "claim lost, or its audit stopped"

    def run(self) -> None:
        while not self.done.wait(self.seconds):
            try:
                self.beat()
            except Exception:  # a database hiccup must not kill the shard; the next beat retries
                log.exception("heartbeat of shard %d of %s failed", self.index, self.job_id)


def run_shard(ctx, spec, model, data, device, record: ShardRecord, progress) -> str:
    """Run one shard in this process, batched as planned; the sha256 of its stored records."""
    from robustness.evaluation.shards import shard_to_bytes
    from robustness.evaluation.sweep import sweep_shard

    if record.batch_size is not None:
        spec = spec.model_copy(update={"batch_size": record.batch_size})

    shard = sweep_shard(model, data, spec, record.start, record.stop, device=device,
                        progress=progress, collect_adversarial=True)
    return ctx.store.put_bytes(shard_to_bytes(shard))


def coordinate(ctx, job, spec, model, data, device, beat, model_info: dict):
    """The audit's AuditResult, its shards run here and on any other worker (see above)."""
    from robustness.batching import BatchChoice, resolve_batch
    from robustness.evaluation.shards import (
        merge_shards,
        shard_from_bytes,
        shard_ranges,
    )
    from robustness.evaluation.shards import (
        progress_units as units,
    )
    from robustness.evaluation.sweep import check_against_data
    from store.queue import make_celery, send_shard

    settings = ctx.settings
    check_against_data(spec, data.x)
    n = len(data.x)
    started = time.perf_counter()
    spec, batch = resolve_batch(spec, model, data.x, device, settings.max_batch_size)
    planned = store_shards.plan(ctx.db, job.id, shard_ranges(n, spec.batch_size,
                                                              shard_count(settings, n)),
                                spec.batch_size)
    if planned[0].batch_size not in (None, spec.batch_size):
        # Planned by an earlier coordinator, on a machine with other free memory: its batch
        # is the one its finished shards were seeded with.
        spec = spec.model_copy(update={"batch_size": planned[0].batch_size})
        batch = BatchChoice(value=spec.batch_size, chosen="free memory (first coordinator)")
    celery = make_celery(settings)
    for record in planned:
        if record.status == "queued":
            send_shard(celery, job.id, record.index)
    total = units(spec, 0, n)

    def finished_units(states, but=None):
        return sum(units(spec, r.start, r.stop) if r.status == "succeeded"
                   else r.progress_completed for r in states if r.index != but)

    while True:
        store_shards.give_up_on_stale(ctx.db, settings.lease_seconds,
                                      settings.shard_max_attempts)
        states = store_shards.shards(ctx.db, job.id)
        failed = [r for r in states if r.status == "failed"]
        if failed:
            r = failed[0]
            raise ShardFailed(f"shard {r.index + 1} of {len(states)} (examples "
                              f"{r.start}–{r.stop - 1}) failed: {r.error}")
        if all(r.status == "succeeded" for r in states):
            break
        claimed = store_shards.claim_next(ctx.db, job.id, settings.lease_seconds)
        if claimed is None:
            running = sum(r.status == "running" for r in states)
            beat.progress(finished_units(states), total,
                          f"waiting for {running} shard(s) on other workers")
            time.sleep(min(settings.heartbeat_seconds, WAIT_SECONDS))
            continue
        index, token = claimed
        record = states[index]
        base = finished_units(states, but=index)
        where = f"shard {index + 1}/{len(states)}"
        shard_beat = ShardBeat(ctx.db, job.id, index, token, settings.heartbeat_seconds)
        shard_beat.start()

        def progress(done, of, phase, base=base, where=where, shard_beat=shard_beat):
            shard_beat.progress(done, of, phase)
            beat.progress(base + done, total, f"{where}: {phase}")
        try:
            sha = run_shard(ctx, spec, model, data, device, record, progress)
        except RobustnessError as exc:
            store_shards.fail(ctx.db, job.id, index, token, str(exc))
            raise
        finally:
            shard_beat.done.set()
        store_shards.finish(ctx.db, job.id, index, token, sha)
    loaded = [shard_from_bytes(ctx.store.read_bytes(r.result_sha256)) for r in states]
    beat.progress(total, total, "merging the shards")
    return merge_shards(model, data, spec, loaded, device=device, model_info=model_info,
                        started=started, collect_adversarial=True, batch=batch)


def run_shard_task(ctx, job_id: str, index: int) -> str:
    """A shard's task in the worker process: claim it, keep its heartbeat, have a sandbox run
    it, store the outcome once. Returns what happened, for the task's log line."""
    from workers.sandbox import SANDBOXES

    token = store_shards.claim(ctx.db, job_id, index, ctx.settings.lease_seconds)
    if token is None:
        return "not claimable (done, running elsewhere, or its audit is not running)"
    log.info("audit %s shard %d: started", job_id, index)
    beat = ShardBeat(ctx.db, job_id, index, token, ctx.settings.heartbeat_seconds)
    beat.start()
    ended = SANDBOXES.run(ctx.settings, job_id, beat, shard=index)
    if ended.how == "outcome":
        stored = store_shards.finish(ctx.db, job_id, index, token,
                                     ended.value["result_sha256"])
        return "succeeded" if stored else "finished after losing its claim; result dropped"
    if ended.how in ("stopped", "killed"):
        return f"stopped: {ended.value}"  # its audit stopped, or the claim moved on
    store_shards.fail(ctx.db, job_id, index, token, str(ended.value)[:4000])
    return "failed"
