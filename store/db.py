"""Job and model records: the source of truth for what exists and what state each job is in.

The broker only carries job ids; everything a job needs or produces is here or in the
artifact store. SQLite (WAL, so the gateway reads while a worker writes) by default,
PostgreSQL with DATABASE_URL. The schema is created and upgraded by Alembic migrations.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from robustness.http_models import FINAL_STATES, JOB_STATES  # noqa: F401 - re-exported


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


class Base(DeclarativeBase):
    type_annotation_map: ClassVar = {dict: JSON, list: JSON}


DEFAULT_TENANT = "default"


class ApiKeyRecord(Base):
    """An API key: only the sha256 of its secret is stored."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    tenant: Mapped[str] = mapped_column(String(100), index=True)
    scopes: Mapped[list] = mapped_column(JSON)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ModelRecord(Base):
    __tablename__ = "models"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(100), index=True, default=DEFAULT_TENANT)
    name: Mapped[str | None] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(String(40))
    model_metadata: Mapped[dict] = mapped_column("metadata", JSON)
    card: Mapped[dict | None] = mapped_column(JSON)
    source_training_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class JobRecord(Base):
    __tablename__ = "jobs"
    # A retried submission with the same Idempotency-Key finds the job the first one made.
    __table_args__ = (UniqueConstraint("tenant", "idempotency_key",
                                       name="uq_jobs_tenant_idempotency_key"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(100), index=True, default=DEFAULT_TENANT)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20), index=True)  # audit | training
    status: Mapped[str] = mapped_column(String(20), index=True, default="queued")
    spec: Mapped[dict] = mapped_column(JSON)
    model_id: Mapped[str | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"))
    progress_completed: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    phase: Mapped[str | None] = mapped_column(String(100))
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(200))
    report_sha256: Mapped[str | None] = mapped_column(String(64))
    adversarial_sha256: Mapped[str | None] = mapped_column(String(64))
    result_model_id: Mapped[str | None] = mapped_column(String(40))
    history: Mapped[list | None] = mapped_column(JSON)
    summary: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    seconds: Mapped[float | None] = mapped_column(Float)
    schedule_id: Mapped[str | None] = mapped_column(String(40), index=True)
    callback_url: Mapped[str | None] = mapped_column(String(2000))
    callback_status: Mapped[str | None] = mapped_column(String(200))
    callback_attempts: Mapped[int] = mapped_column(Integer, default=0)
    # When the next delivery attempt is due (None: at once); set by the backoff after a failure.
    callback_next_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Example forward+backward passes, counted at submission (None: unknown until loaded).
    passes: Mapped[int | None] = mapped_column(BigInteger)
    # The X-Request-ID of the submission: the worker's logs and the callback carry it.
    request_id: Mapped[str | None] = mapped_column(String(128))
    # Set when ROBUSTNESS_RETENTION_DAYS removed the adversarial set (the report stays).
    adversarial_expired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ShardRecord(Base):
    """One shard of a sharded audit: a contiguous run of whole batches of its examples, run
    and retried on its own (`store.shards`); its per-example records are an artifact until
    the audit's merge reads them."""

    __tablename__ = "audit_shards"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"),
                                        primary_key=True)
    index: Mapped[int] = mapped_column("shard_index", Integer, primary_key=True)
    start: Mapped[int] = mapped_column(Integer)
    stop: Mapped[int] = mapped_column(Integer)
    # the audit's batch size, as its coordinator resolved it (None: planned before 0009)
    batch_size: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="queued")  # + running|succeeded|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(200))
    progress_completed: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    result_sha256: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    seconds: Mapped[float | None] = mapped_column(Float)


class CallbackDeliveryRecord(Base):
    """One attempt at delivering a job's callback: what `GET …/{id}/deliveries` lists."""

    __tablename__ = "callback_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(40), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    message_id: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    seconds: Mapped[float] = mapped_column(Float)
    outcome: Mapped[str] = mapped_column(String(20))  # delivered | failed | blocked | retrying
    detail: Mapped[str] = mapped_column(String(500))


class WebhookSecretRecord(Base):
    """A tenant's Standard Webhooks signing secret (`whsec_…`), generated on first use: kept
    in the database, beside the keys, so that every gateway signs with the same one."""

    __tablename__ = "webhook_secrets"

    tenant: Mapped[str] = mapped_column(String(100), primary_key=True)
    secret: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ScheduleRecord(Base):
    """A cron-timed audit: each firing creates an ordinary audit job naming the schedule."""

    __tablename__ = "schedules"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(100), index=True, default=DEFAULT_TENANT)
    cron: Mapped[str] = mapped_column(String(200))
    audit: Mapped[dict] = mapped_column(JSON)
    callback_url: Mapped[str | None] = mapped_column(String(2000))
    # A run whose accuracy falls by more than this from the previous run's is a regression.
    tolerance: Mapped[float] = mapped_column(Float, default=0.01)
    next_run_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    last_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The column predates the name: it holds the id of the last audit this schedule fired.
    last_audit_id: Mapped[str | None] = mapped_column("last_job_id", String(40))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record):
    """WAL lets the gateway read while a worker writes; the busy timeout rides out the rest."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        return create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
    return create_engine(url, pool_pre_ping=True)


def migrate(engine: Engine) -> None:
    """Bring the schema to the latest Alembic revision (idempotent)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


class Database:
    """An engine and its session factory, migrated on first use."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        migrate(self.engine)
        self.session = sessionmaker(self.engine, expire_on_commit=False)

    def dispose(self) -> None:
        self.engine.dispose()
