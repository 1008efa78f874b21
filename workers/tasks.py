"""The Celery tasks: a job id in, the stored job run by `workers.running`. Nothing else."""

from __future__ import annotations

import logging

from workers.celery_app import app
from workers.context import worker_context
from workers.running import run_job
from workers.settings import get_settings

log = logging.getLogger(__name__)
# A backstop only: jobs stop themselves at their own limit, between batches, and fail with a
# reason; this kills a job stuck inside one batch (prefork pool), and the job is then
# redelivered until `max_attempts` runs out.
GRACE = 600


@app.task(name="robustness.audit", acks_late=True, reject_on_worker_lost=True,
          time_limit=get_settings().audit_time_limit + GRACE)
def run_audit(job_id: str) -> None:
    log.info("audit %s: %s", job_id, run_job(worker_context(), job_id))


@app.task(name="robustness.training", acks_late=True, reject_on_worker_lost=True,
          time_limit=get_settings().training_time_limit + GRACE)
def run_training(job_id: str) -> None:
    log.info("training %s: %s", job_id, run_job(worker_context(), job_id))
