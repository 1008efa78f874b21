"""Every setting of the gateway and the workers, read once from the environment (the state
directory and the data root through `robustness.paths`, which the library's CLI reads too).

With nothing set, everything runs embedded under ROBUSTNESS_HOME: a SQLite file for job
records, a second SQLite file as the Celery broker (kombu's SQLAlchemy transport, no server)
and a content-addressed artifact directory. `DATABASE_URL` and `REDIS_URL` switch to
PostgreSQL and Redis for the split deployment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from robustness import paths


class Settings(BaseSettings):
    """What the gateway and the workers both need: where state lives and how to reach the
    database and the broker. `service.settings.GatewaySettings` and
    `workers.settings.WorkerSettings` add what only one of them uses."""

    model_config = SettingsConfigDict(env_prefix="ROBUSTNESS_", extra="ignore",
                                      populate_by_name=True)

    # ROBUSTNESS_HOME and ROBUSTNESS_DATA_ROOT are read by `robustness.paths` alone (the CLI
    # needs them without these settings); see settings_customise_sources.
    home: Path = Field(default_factory=paths.home, description="state directory")
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL",
                                     description="default: SQLite file in home")
    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL",
                                  description="Celery broker; default: embedded SQLite broker")
    artifact_dir: Path | None = Field(default=None, description="default: home/artifacts")
    data_root: Path = Field(default_factory=paths.data_root,
                            description="where data sets are found")

    max_batch_size: int = Field(default=4096, gt=0, description="largest batch a job may ask "
                                "for, and the largest an audit without one is given: bounds "
                                "a worker's memory per job")
    log_format: Literal["json", "text"] = Field(default="json", description="gateway and "
                                                "worker logs: JSON lines with the request and "
                                                "job ids, or text")

    # Liveness: a running job's worker touches the record at least this often; a record not
    # touched for `lease_seconds` belongs to a dead worker and is redelivered.
    lease_seconds: float = 120.0
    visibility_timeout: int = Field(default=25 * 3600, description="Redis: seconds before an "
                                    "unacknowledged message is redelivered; longer than any "
                                    "job, since the reconciler already redelivers the jobs of "
                                    "dead workers after a lease")

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings,
                                   dotenv_settings, file_secret_settings):
        return init_settings, _EnvWithoutPaths(settings_cls), dotenv_settings, file_secret_settings

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


class _EnvWithoutPaths(EnvSettingsSource):
    """The environment, less the two paths `robustness.paths` owns."""

    def __call__(self) -> dict:
        return {k: v for k, v in super().__call__().items() if k not in PATH_FIELDS}


PATH_FIELDS = ("home", "data_root")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
