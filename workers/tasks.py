"""The Celery tasks, one per job kind (from `store.kinds`): a job id in, the stored job run by
`workers.running`. Nothing else."""

from __future__ import annotations

import logging

from store.kinds import KINDS
from workers.celery_app import app
from workers.context import worker_context
from workers.running import run_job
from workers.settings import get_worker_settings

log = logging.getLogger(__name__)
# A backstop only: jobs stop themselves at their own limit, between batches, and fail with a
# reason; this kills a job stuck inside one batch (prefork pool), and the job is then
# redelivered until `max_attempts` runs out. Late acknowledgement is the app's configuration.
GRACE = 600


def _register(kind) -> None:
    def run(job_id: str) -> None:
        log.info("%s %s: %s", kind.name, job_id, run_job(worker_context(), job_id))

    run.__name__ = run.__qualname__ = f"run_{kind.name}"
    app.task(name=kind.task, time_limit=kind.time_limit(get_worker_settings()) + GRACE)(run)


for _kind in KINDS.values():
    _register(_kind)
