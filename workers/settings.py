"""Every setting of the gateway and the workers, read once from the environment.

With nothing set, everything runs embedded under ROBUSTNESS_HOME: a SQLite file for job
records, a second SQLite file as the Celery broker (kombu's SQLAlchemy transport, no server)
and a content-addressed artifact directory. `DATABASE_URL` and `REDIS_URL` switch to
PostgreSQL and Redis for the split deployment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from robustness import paths


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ROBUSTNESS_", extra="ignore",
                                      populate_by_name=True)

    home: Path = Field(default_factory=paths.home, description="state directory")
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL",
                                     description="default: SQLite file in home")
    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL",
                                  description="Celery broker; default: embedded SQLite broker")
    artifact_dir: Path | None = Field(default=None, description="default: home/artifacts")
    data_root: Path | None = Field(default=None, description="where data sets are found")
    device: str = Field(default="auto", description="worker device: auto, cpu, cuda, cuda:1")
    admin_key: str | None = Field(default=None, description="an admin API key of the default "
                                  "tenant; default: generated once, kept in home/admin.key")
    allow_anonymous: bool = Field(default=False, description="local development only: "
                                  "unauthenticated calls from loopback get read and submit")

    # Limits.
    max_upload_bytes: int = 512 * 1024 * 1024
    audit_time_limit: int = Field(default=6 * 3600, description="seconds; the job then fails")
    training_time_limit: int = Field(default=24 * 3600)
    max_job_passes: int = Field(default=10**10, description="refuse jobs needing more example "
                                "forward+backward passes than this (n × steps × restarts × ε "
                                "for audits, n × epochs × steps for trainings)")
    max_batch_size: int = Field(default=4096, description="largest batch a job may ask for: "
                                "bounds a worker's memory per job")
    callback_hosts: str | None = Field(default=None, description="comma-separated hosts that "
                                       "schedule callbacks may call; unset: any host")
    model_cache_size: int = 8
    dataset_cache_size: int = 4

    # Liveness: a running job's worker touches the record at least this often; a record not
    # touched for `lease_seconds` belongs to a dead worker and is redelivered.
    heartbeat_seconds: float = 2.0
    lease_seconds: float = 120.0
    reconcile_seconds: float = 10.0
    max_attempts: int = Field(default=3, description="a job whose worker died this many "
                              "times fails instead of being delivered again")
    visibility_timeout: int = Field(default=25 * 3600, description="Redis: seconds before an "
                                    "unacknowledged message is redelivered; longer than any "
                                    "job, since the reconciler already redelivers the jobs of "
                                    "dead workers after a lease")

    @property
    def sqlalchemy_url(self) -> str:
        url = self.database_url or f"sqlite:///{self.home / 'robustness.db'}"
        # Heroku-style postgres:// and plain postgresql:// both mean psycopg 3 here.
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix):]
        return url

    @property
    def broker_url(self) -> str:
        return self.redis_url or f"sqla+sqlite:///{self.home / 'broker.db'}"

    @property
    def embedded_broker(self) -> bool:
        return self.redis_url is None

    @property
    def artifacts(self) -> Path:
        return self.artifact_dir or self.home / "artifacts"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
