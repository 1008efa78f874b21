"""Job state transitions, written as single conditional UPDATEs so that two workers (or a
worker and a redelivery of its message) can never both run a job or both store an outcome.

queued -> running -> succeeded | failed | cancelled; queued -> cancelled. A running job whose
worker stopped touching the record for a lease is claimable again (the worker died).
Each claim gets a fresh token in `worker`; only the holder of the current token may report
progress or store an outcome.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select, update

from store.db import FINAL_STATES, Database, JobRecord, new_id, utcnow
from store.kinds import KINDS


def new_job(kind: str, spec: dict, model_id: str | None, **extra) -> JobRecord:
    return JobRecord(id=new_id(KINDS[kind].id_prefix), kind=kind,
                     status="queued", spec=spec, model_id=model_id, progress_completed=0,
                     progress_total=0, cancel_requested=False, attempts=0,
                     callback_attempts=0, created_at=utcnow(), **extra)


def as_utc(value: datetime) -> datetime:
    """SQLite returns naive datetimes (stored in UTC); PostgreSQL aware ones in the session's
    zone. Either way, an aware UTC datetime."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else \
        value.astimezone(UTC)


def create_job(db: Database, kind: str, spec: dict, model_id: str | None, **extra
               ) -> JobRecord:
    job = new_job(kind, spec, model_id, **extra)
    with db.session.begin() as s:
        s.add(job)
    return job


def get_job(db: Database, job_id: str) -> JobRecord | None:
    with db.session() as s:
        return s.get(JobRecord, job_id)


def mark_enqueued(db: Database, job_id: str) -> None:
    with db.session.begin() as s:
        s.execute(update(JobRecord).where(JobRecord.id == job_id).values(enqueued_at=utcnow()))


def claim(db: Database, job_id: str, lease_seconds: float) -> str | None:
    """Take the job for this process; returns the claim token, or None if it is not ours to
    run (already finished, cancelled, or running under a live worker)."""
    token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    now = utcnow()
    stale = now - timedelta(seconds=lease_seconds)
    with db.session.begin() as s:
        result = s.execute(
            update(JobRecord)
            .where(JobRecord.id == job_id, JobRecord.cancel_requested.is_(False),
                   or_(JobRecord.status == "queued",
                       (JobRecord.status == "running") & (JobRecord.heartbeat_at < stale)))
            .values(status="running", worker=token, attempts=JobRecord.attempts + 1,
                    started_at=now, heartbeat_at=now, error=None, progress_completed=0,
                    progress_total=0, phase=None))
    return token if result.rowcount == 1 else None


def touch(db: Database, job_id: str, token: str, **values) -> bool:
    """Progress and heartbeat; returns False when the job is no longer ours or a cancel was
    requested, which the caller turns into a stop between batches."""
    with db.session.begin() as s:
        result = s.execute(
            update(JobRecord)
            .where(JobRecord.id == job_id, JobRecord.worker == token,
                   JobRecord.status == "running")
            .values(heartbeat_at=utcnow(), **values))
        if result.rowcount != 1:
            return False
        cancel = s.execute(select(JobRecord.cancel_requested)
                           .where(JobRecord.id == job_id)).scalar_one()
    return not cancel


def finish(db: Database, job_id: str, token: str, status: str, also=None, **values) -> bool:
    """Store the outcome once: only the current claim of a running job can end it. `also(s)`
    adds rows (a trained model's record) in the same transaction, so they exist exactly when
    the job succeeded."""
    assert status in FINAL_STATES
    now = utcnow()
    with db.session.begin() as s:
        job = s.get(JobRecord, job_id)
        if job is None or job.status != "running" or job.worker != token:
            return False
        seconds = (now - as_utc(job.started_at)).total_seconds() if job.started_at else None
        result = s.execute(
            update(JobRecord)
            .where(JobRecord.id == job_id, JobRecord.worker == token,
                   JobRecord.status == "running")
            .values(status=status, finished_at=now, heartbeat_at=now, seconds=seconds,
                    **values))
        if result.rowcount == 1 and also is not None:
            also(s)
    return result.rowcount == 1


def request_cancel(db: Database, job_id: str) -> str | None:
    """A queued job is cancelled at once; a running one at its worker's next batch.
    Returns the job's status after the request, None if it does not exist."""
    with db.session.begin() as s:
        s.execute(update(JobRecord)
                  .where(JobRecord.id == job_id, JobRecord.status == "queued")
                  .values(status="cancelled", cancel_requested=True, finished_at=utcnow(),
                          error="cancelled before it started"))
        s.execute(update(JobRecord)
                  .where(JobRecord.id == job_id, JobRecord.status == "running")
                  .values(cancel_requested=True))
        status = s.execute(select(JobRecord.status).where(JobRecord.id == job_id)).scalar()
    return status


def give_up_on_stale(db: Database, lease_seconds: float, max_attempts: int) -> list[str]:
    """Running jobs whose worker died `max_attempts` times (a job that kills its worker, say
    by exhausting memory) end `failed` instead of looping through the workers."""
    stale = utcnow() - timedelta(seconds=lease_seconds)
    dead = (JobRecord.status == "running") & (JobRecord.heartbeat_at < stale)
    condition = dead & (JobRecord.attempts >= max_attempts) & \
        JobRecord.cancel_requested.is_(False)
    with db.session.begin() as s:
        # A cancel that its dead worker never saw is done: nothing runs the job any more.
        s.execute(update(JobRecord).where(dead, JobRecord.cancel_requested.is_(True)).values(
            status="cancelled", finished_at=utcnow(),
            error="cancelled (its worker had stopped responding)"))
        ids = list(s.execute(select(JobRecord.id).where(condition)).scalars())
        if ids:
            s.execute(update(JobRecord).where(JobRecord.id.in_(ids), condition).values(
                status="failed", finished_at=utcnow(),
                error=f"its worker stopped responding {max_attempts} times (killed, out of "
                      f"memory or past the time limit); not retried again"))
    return ids
