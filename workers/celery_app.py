"""The worker's Celery application: the store's queue configuration plus the tasks."""

from __future__ import annotations

from store.queue import make_celery

app = make_celery(include=("workers.tasks",))
