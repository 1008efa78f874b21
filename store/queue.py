"""The job queue: the Celery application both processes use (the gateway publishes on it, the
worker consumes from it), one queue per job kind, and `send`, which publishes a job's id.

Messages carry only a job id; the record in the database says what to do. Late
acknowledgement, one message at a time per worker process and redelivery on a lost worker are
the worker's side of the same configuration, kept here so both ends agree on it.
"""

from __future__ import annotations

import logging

from celery import Celery
from kombu import Queue

from store import transitions
from store.db import Database, JobRecord
from store.kinds import AUDIT, KINDS, QUEUES, SHARD_TASK
from store.settings import Settings, get_settings

log = logging.getLogger(__name__)


def make_celery(settings: Settings | None = None, include: tuple[str, ...] = ()) -> Celery:
    settings = settings or get_settings()
    app = Celery("robustness", broker=settings.broker_url, include=list(include))
    transport_options = ({"connect_args": {"timeout": 30}} if settings.embedded_broker
                         else {"visibility_timeout": settings.visibility_timeout})
    if settings.embedded_broker:
        settings.home.mkdir(parents=True, exist_ok=True)
    app.conf.update(
        task_queues=[Queue(q) for q in QUEUES],
        task_default_queue=QUEUES[0],
        task_routes={**{k.task: {"queue": k.queue} for k in KINDS.values()},
                     SHARD_TASK: {"queue": AUDIT.queue}},
        task_serializer="json", accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    return app


def send(celery: Celery, db: Database, job: JobRecord) -> bool:
    """Publish the job's message; False (job left for the reconciler) if the broker is down."""
    kind = KINDS.get(job.kind)
    if kind is None:  # a kind this gateway does not know: leave the job for one that does
        log.warning("cannot enqueue %s: no job kind %r here", job.id, job.kind)
        return False
    try:
        celery.send_task(kind.task, args=[job.id], queue=kind.queue, retry=True,
                         retry_policy={"max_retries": 1, "interval_start": 0,
                                       "interval_step": 0.2, "interval_max": 0.5})
    except Exception as exc:  # noqa: BLE001 - broker down: the job stays queued
        log.warning("could not enqueue %s (%s); the reconciler will retry", job.id, exc)
        return False
    transitions.mark_enqueued(db, job.id)
    return True


def send_shard(celery: Celery, job_id: str, index: int) -> bool:
    """Publish one shard's message; False if the broker is down (the audit's coordinator then
    runs the shard itself, as it runs any shard nobody took)."""
    try:
        celery.send_task(SHARD_TASK, args=[job_id, index], queue=AUDIT.queue, retry=True,
                         retry_policy={"max_retries": 1, "interval_start": 0,
                                       "interval_step": 0.2, "interval_max": 0.5})
    except Exception as exc:  # noqa: BLE001
        log.warning("could not enqueue shard %d of %s (%s)", index, job_id, exc)
        return False
    return True
