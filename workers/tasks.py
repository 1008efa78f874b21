"""The Celery tasks, one per job kind (from `store.kinds`): a job id in, the stored job run by
`workers.running`. Nothing else."""

from __future__ import annotations

import logging

from celery.signals import worker_process_init

from store.kinds import KINDS, SHARD_TASK
from workers.celery_app import app
from workers.context import worker_context
from workers.running import run_job
from workers.sandbox import SANDBOXES
from workers.settings import get_worker_settings
from workers.shards import run_shard_task

log = logging.getLogger(__name__)
# A backstop only: jobs end at their own limit (`workers.running` stops or kills the sandbox
# that runs them, and fails the job with a reason), so only a worker bug reaches this one,
# and the job is then redelivered until `max_attempts` runs out. Late acknowledgement is the
# app's configuration.
GRACE = 600


@worker_process_init.connect
def _start_sandbox(**_) -> None:
    """Each pool process starts its sandbox at once, so the first job does not wait for it."""
    SANDBOXES.prewarm(worker_context().settings)


def _register(kind) -> None:
    def run(job_id: str) -> None:
        run_job(worker_context(), job_id)  # which logs the job's start and outcome

    run.__name__ = run.__qualname__ = f"run_{kind.name}"
    app.task(name=kind.task, time_limit=kind.time_limit(get_worker_settings()) + GRACE)(run)


for _kind in KINDS.values():
    _register(_kind)


@app.task(name=SHARD_TASK, time_limit=get_worker_settings().audit_time_limit + GRACE)
def run_audit_shard(job_id: str, index: int) -> None:
    """One shard of a sharded audit (workers.shards)."""
    outcome = run_shard_task(worker_context(), job_id, index)
    log.info("audit %s shard %d: %s", job_id, index, outcome)
