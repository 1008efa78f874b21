"""Shard state transitions, written like `store.transitions`: single conditional UPDATEs, so
two workers (or a worker and a redelivered message) never both run a shard or both store its
result, and the database stays the one place that says which shards of an audit are done.

queued -> running -> succeeded | failed. A running shard whose worker stopped touching it for
a lease is claimable again (the worker died): the audit loses that shard's work, not its
own. Shards run only while their audit job is running and not asked to cancel.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import timedelta

from sqlalchemy import exists, or_, select, update

from store.db import Database, JobRecord, ShardRecord, utcnow
from store.transitions import as_utc


def _token() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _job_live():
    return exists().where(JobRecord.id == ShardRecord.job_id, JobRecord.status == "running",
                          JobRecord.cancel_requested.is_(False))


def plan(db: Database, job_id: str, ranges: list[tuple[int, int]],
         batch_size: int | None = None) -> list[ShardRecord]:
    """The job's shards (of `batch_size` batches), made on the first call; a later call (the
    audit's coordinator after a restart) gets the ones that exist, finished work included,
    whatever `ranges` and `batch_size` say."""
    with db.session.begin() as s:
        rows = list(s.execute(select(ShardRecord).where(ShardRecord.job_id == job_id)
                              .order_by(ShardRecord.index)).scalars())
        if not rows:
            rows = [ShardRecord(job_id=job_id, index=i, start=lo, stop=hi,
                                batch_size=batch_size, status="queued",
                                attempts=0, progress_completed=0, progress_total=0)
                    for i, (lo, hi) in enumerate(ranges)]
            s.add_all(rows)
    return rows


def shards(db: Database, job_id: str) -> list[ShardRecord]:
    with db.session() as s:
        return list(s.execute(select(ShardRecord).where(ShardRecord.job_id == job_id)
                              .order_by(ShardRecord.index)).scalars())


def claim(db: Database, job_id: str, index: int, lease_seconds: float) -> str | None:
    """Take one shard for this process: its claim token, or None when it is not ours to run
    (done, running under a live worker, or its audit is not running)."""
    token, now = _token(), utcnow()
    stale = now - timedelta(seconds=lease_seconds)
    with db.session.begin() as s:
        result = s.execute(
            update(ShardRecord)
            .where(ShardRecord.job_id == job_id, ShardRecord.index == index, _job_live(),
                   or_(ShardRecord.status == "queued",
                       (ShardRecord.status == "running") & (ShardRecord.heartbeat_at < stale)))
            .values(status="running", worker=token, attempts=ShardRecord.attempts + 1,
                    started_at=now, heartbeat_at=now, progress_completed=0, error=None)
            .execution_options(synchronize_session=False))
    return token if result.rowcount == 1 else None


def claim_next(db: Database, job_id: str, lease_seconds: float) -> tuple[int, str] | None:
    """Any claimable shard of the job, lowest index first: (index, token), or None."""
    stale = utcnow() - timedelta(seconds=lease_seconds)
    for record in shards(db, job_id):
        claimable = record.status == "queued" or (
            record.status == "running" and record.heartbeat_at is not None
            and as_utc(record.heartbeat_at) < stale)
        if claimable:
            token = claim(db, job_id, record.index, lease_seconds)
            if token is not None:
                return record.index, token
    return None


def touch(db: Database, job_id: str, index: int, token: str, **values) -> bool:
    """Progress and heartbeat; False when the shard is no longer ours or its audit stopped
    running (cancelled, failed, finished), which the caller turns into a stop."""
    with db.session.begin() as s:
        result = s.execute(
            update(ShardRecord)
            .where(ShardRecord.job_id == job_id, ShardRecord.index == index,
                   ShardRecord.worker == token, ShardRecord.status == "running", _job_live())
            .values(heartbeat_at=utcnow(), **values)
            .execution_options(synchronize_session=False))
    return result.rowcount == 1


def _end(db: Database, job_id: str, index: int, token: str, status: str, **values) -> bool:
    now = utcnow()
    with db.session.begin() as s:
        record = s.get(ShardRecord, (job_id, index))
        if record is None or record.status != "running" or record.worker != token:
            return False
        seconds = (now - as_utc(record.started_at)).total_seconds() \
            if record.started_at else None
        result = s.execute(
            update(ShardRecord)
            .where(ShardRecord.job_id == job_id, ShardRecord.index == index,
                   ShardRecord.worker == token, ShardRecord.status == "running")
            .values(status=status, finished_at=now, heartbeat_at=now, seconds=seconds,
                    **values)
            .execution_options(synchronize_session=False))
    return result.rowcount == 1


def finish(db: Database, job_id: str, index: int, token: str, result_sha256: str) -> bool:
    """Store the shard's result once: only its current claim can."""
    return _end(db, job_id, index, token, "succeeded", result_sha256=result_sha256)


def fail(db: Database, job_id: str, index: int, token: str, error: str) -> bool:
    """A failure the library named (bad input): retrying would fail again, so the shard ends
    `failed` and its audit fails with the reason."""
    return _end(db, job_id, index, token, "failed", error=error)


def give_up_on_stale(db: Database, lease_seconds: float, max_attempts: int) -> list[tuple]:
    """Shards whose worker died `max_attempts` times end `failed` (one that kills its worker
    would otherwise loop through the workers), so their audit can fail with the reason."""
    stale = utcnow() - timedelta(seconds=lease_seconds)
    condition = (ShardRecord.status == "running") & (ShardRecord.heartbeat_at < stale) & \
        (ShardRecord.attempts >= max_attempts)
    with db.session.begin() as s:
        keys = [tuple(k) for k in s.execute(select(ShardRecord.job_id, ShardRecord.index)
                                            .where(condition))]
        if keys:
            s.execute(update(ShardRecord).where(condition).values(
                status="failed", finished_at=utcnow(),
                error=f"its worker stopped responding {max_attempts} times (killed, out of "
                      f"memory or past the time limit); not retried again")
                .execution_options(synchronize_session=False))
    return keys
