"""The Celery application: two queues (audits, trainings), late acknowledgement so a job
whose worker dies is delivered again, one message at a time per worker process, and time
limits. Messages carry only a job id; the record in the database says what to do."""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from workers.settings import get_settings

AUDITS, TRAININGS = "audits", "trainings"


def make_celery(settings=None) -> Celery:
    settings = settings or get_settings()
    app = Celery("robustness", broker=settings.broker_url, include=["workers.tasks"])
    transport_options = ({"connect_args": {"timeout": 30}} if settings.embedded_broker
                         else {"visibility_timeout": settings.visibility_timeout})
    if settings.embedded_broker:
        settings.home.mkdir(parents=True, exist_ok=True)
    app.conf.update(
        task_queues=[Queue(AUDITS), Queue(TRAININGS)],
        task_default_queue=AUDITS,
        task_routes={"robustness.audit": {"queue": AUDITS},
                     "robustness.training": {"queue": TRAININGS}},
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


app = make_celery()
