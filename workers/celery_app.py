"""The worker's Celery application: the store's queue configuration plus the tasks."""

from __future__ import annotations

from celery.signals import setup_logging

from store.logs import configure_logging
from store.queue import make_celery

app = make_celery(include=("workers.tasks",))


@setup_logging.connect
def _logging(**_) -> None:
    """The workers log as the gateway does (store.logs); connecting this keeps Celery from
    installing its own handlers."""
    from workers.settings import get_worker_settings

    configure_logging(get_worker_settings().log_format)
