"""What a worker process holds across jobs: settings, database, artifact store, caches. The
worker process and its sandbox (`workers.sandbox`) each build one from the same settings; the
caches fill in the sandbox, where the runners run."""

from __future__ import annotations

from functools import lru_cache

from store.artifacts import ArtifactStore
from store.db import Database
from workers.cache import LRU
from workers.settings import WorkerSettings, get_worker_settings


class WorkerContext:
    def __init__(self, settings: WorkerSettings):
        self.settings = settings
        self.db = Database(settings.sqlalchemy_url)
        self.store = ArtifactStore(settings.artifacts)
        self.models = LRU(settings.model_cache_size)
        self.datasets = LRU(settings.dataset_cache_size)


@lru_cache(maxsize=1)
def worker_context() -> WorkerContext:
    return WorkerContext(get_worker_settings())
