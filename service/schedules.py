"""Cron-timed audits and completion callbacks, driven by the gateway's housekeeping loop.

A firing is claimed with a conditional UPDATE of `next_run_at`, so several gateways never fire
one schedule twice. Callbacks are POSTed by the gateway (workers may have no way out of their
network), retried a few times, and their outcome recorded on the job.
"""

from __future__ import annotations

import logging
from datetime import datetime

import httpx
from croniter import croniter
from sqlalchemy import select, update

from service.views import job_view
from store.db import FINAL_STATES, JobRecord, ScheduleRecord, utcnow
from store.kinds import AUDIT
from store.queue import send
from store.transitions import as_utc, new_job

log = logging.getLogger(__name__)
CALLBACK_ATTEMPTS = 3


def next_fire(cron: str, after: datetime) -> datetime:
    """The next firing after `after`, in UTC (ScheduleSpec has validated `cron`)."""
    return croniter(cron, as_utc(after)).get_next(datetime)


def fire_due(gw, now: datetime | None = None) -> list[str]:
    """Create (and enqueue) the audits of every schedule due at `now`; returns their ids."""
    now = as_utc(now or utcnow())
    with gw.db.session() as s:
        due = list(s.execute(select(ScheduleRecord)
                             .where(ScheduleRecord.next_run_at <= now)).scalars())
    created = []
    for schedule in due:
        try:
            job_id = _fire(gw, schedule, now)
        except Exception:
            log.exception("schedule %s could not fire", schedule.id)
            continue
        if job_id:
            created.append(job_id)
    return created


def _fire(gw, schedule: ScheduleRecord, now: datetime) -> str | None:
    """Claim this firing (a conditional UPDATE of next_run_at) and create its audit."""
    job = new_job(AUDIT.name, schedule.audit, schedule.audit.get("model_id"),
                  schedule_id=schedule.id, callback_url=schedule.callback_url,
                  tenant=schedule.tenant)
    with gw.db.session.begin() as s:
        claimed = s.execute(
            update(ScheduleRecord)
            .where(ScheduleRecord.id == schedule.id,
                   ScheduleRecord.next_run_at == schedule.next_run_at)
            .values(next_run_at=next_fire(schedule.cron, now), last_run_at=now,
                    last_audit_id=job.id)).rowcount == 1
        if claimed:
            s.add(job)
    if not claimed:
        return None
    send(gw.celery, gw.db, job)
    return job.id


def deliver_callbacks(gw, timeout: float = 5.0) -> int:
    """POST each finished job's status to its callback_url; returns how many were sent."""
    with gw.db.session() as s:
        pending = list(s.execute(select(JobRecord).where(
            JobRecord.callback_url.is_not(None), JobRecord.status.in_(FINAL_STATES),
            JobRecord.callback_status.is_(None),
            JobRecord.callback_attempts < CALLBACK_ATTEMPTS)).scalars())
    sent = 0
    for job in pending:
        attempts = job.callback_attempts + 1
        with gw.db.session.begin() as s:  # claim this attempt: one gateway sends it
            if s.execute(update(JobRecord).where(
                    JobRecord.id == job.id, JobRecord.callback_status.is_(None),
                    JobRecord.callback_attempts == job.callback_attempts)
                    .values(callback_attempts=attempts)).rowcount != 1:
                continue
        try:
            r = httpx.post(job.callback_url, json=job_view(job), timeout=timeout)
            status = f"{r.status_code}" if r.status_code < 300 else None
            error = None if status else f"HTTP {r.status_code}"
        except Exception as exc:  # noqa: BLE001 - any failure of the receiver is recorded
            status, error = None, f"{type(exc).__name__}: {exc}"
        if status is None and attempts >= CALLBACK_ATTEMPTS:
            status = f"gave up: {error}"[:200]
        if status is not None:
            with gw.db.session.begin() as s:
                s.execute(update(JobRecord).where(JobRecord.id == job.id)
                          .values(callback_status=status))
        sent += status is not None and not status.startswith("gave up")
        if error:
            log.warning("callback of %s to %s failed: %s", job.id, job.callback_url, error)
    return sent
