"""Cron-timed audits, fired by the gateway's scheduler thread (their completion callbacks:
`service.callbacks`).

A firing is claimed with a conditional UPDATE of `next_run_at`, so several gateways never fire
one schedule twice.
"""

from __future__ import annotations

import logging
from datetime import datetime

from croniter import croniter
from sqlalchemy import select, update

from service.quotas import over_unfinished_jobs
from store.db import ScheduleRecord, utcnow
from store.kinds import AUDIT
from store.queue import send
from store.transitions import as_utc, new_job

log = logging.getLogger(__name__)


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
    """Claim this firing (a conditional UPDATE of next_run_at) and create its audit, unless
    the tenant already has as many unfinished jobs as its quota allows (then it is skipped)."""
    skip = over_unfinished_jobs(gw, schedule.tenant)
    job = new_job(AUDIT.name, schedule.audit, schedule.audit.get("model_id"),
                  schedule_id=schedule.id, callback_url=schedule.callback_url,
                  tenant=schedule.tenant)
    with gw.db.session.begin() as s:
        claimed = s.execute(
            update(ScheduleRecord)
            .where(ScheduleRecord.id == schedule.id,
                   ScheduleRecord.next_run_at == schedule.next_run_at)
            .values(next_run_at=next_fire(schedule.cron, now),
                    **({} if skip else {"last_run_at": now, "last_audit_id": job.id}))
        ).rowcount == 1
        if claimed and not skip:
            s.add(job)
    if claimed and skip:
        log.warning("schedule %s skipped its firing at %s: tenant %s is at its quota of "
                    "unfinished jobs", schedule.id, now, schedule.tenant)
    if not claimed or skip:
        return None
    send(gw.celery, gw.db, job)
    return job.id
