"""Per-tenant quotas, checked before anything is stored: how many models, schedules and
unfinished jobs a tenant may hold, and how often a schedule may fire. One tenant's script
gone wrong (300 schedules were created in 3.6 s by a probe) must not fill the service for all.

A cap on what a tenant keeps (models, schedules) is a 409 that says what to delete; a cap on
unfinished jobs is a 429 with Retry-After, since it clears as jobs end (a schedule's firing
over it is skipped and logged). The caps are counted, then the row is written: requests that
race can overshoot a cap by their number, which bounds a runaway script, not a determined one.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from croniter import croniter
from sqlalchemy import func, select

from service.problems import Problem
from store.db import JobRecord, ModelRecord, ScheduleRecord

UNFINISHED = ("queued", "running")


def _count(gw, record, tenant: str, *where) -> int:
    with gw.db.session() as s:
        return s.execute(select(func.count()).select_from(record)
                         .where(record.tenant == tenant, *where)).scalar_one()


def check_models(gw, tenant: str) -> None:
    limit = gw.settings.max_models_per_tenant
    if _count(gw, ModelRecord, tenant) >= limit:
        raise Problem(409, f"quota: tenant '{tenant}' already has {limit} models, its limit "
                           f"(ROBUSTNESS_MAX_MODELS_PER_TENANT); delete one first")


def check_schedules(gw, tenant: str) -> None:
    limit = gw.settings.max_schedules_per_tenant
    if _count(gw, ScheduleRecord, tenant) >= limit:
        raise Problem(409, f"quota: tenant '{tenant}' already has {limit} schedules, its limit "
                           f"(ROBUSTNESS_MAX_SCHEDULES_PER_TENANT); delete one first")


def over_unfinished_jobs(gw, tenant: str) -> bool:
    limit = gw.settings.max_unfinished_jobs_per_tenant
    return _count(gw, JobRecord, tenant, JobRecord.status.in_(UNFINISHED)) >= limit


def check_unfinished_jobs(gw, tenant: str) -> None:
    limit = gw.settings.max_unfinished_jobs_per_tenant
    if over_unfinished_jobs(gw, tenant):
        raise Problem(429, f"quota: tenant '{tenant}' has {limit} jobs queued or running, its "
                           f"limit (ROBUSTNESS_MAX_UNFINISHED_JOBS_PER_TENANT); submit again "
                           f"when some have ended", headers={"Retry-After": "60"})


def shortest_interval(cron: str, start: datetime, horizon: timedelta = timedelta(days=366),
                      most: int = 2000) -> timedelta | None:
    """The shortest gap between consecutive firings of `cron` within `horizon` of its first
    firing after `start` (a year: `* * 29 2 *` fires every minute, on one day in four years,
    and its first firing is that day), looking at `most` firings at most; None if it fires
    once there."""
    times = croniter(cron, start)
    first = previous = times.get_next(datetime)
    shortest = None
    for _ in range(most):
        following = times.get_next(datetime)
        if following - first > horizon:
            break
        gap = following - previous
        shortest = gap if shortest is None else min(shortest, gap)
        previous = following
    return shortest


def check_cron_interval(gw, cron: str, now: datetime) -> None:
    minimum = timedelta(minutes=gw.settings.min_schedule_minutes)
    gap = shortest_interval(cron, now)
    if gap is not None and gap < minimum:
        raise Problem(422, f"cron: {cron!r} fires {gap.total_seconds() / 60:g} min apart, more "
                           f"often than this service allows (every "
                           f"{gw.settings.min_schedule_minutes:g} min at most, "
                           f"ROBUSTNESS_MIN_SCHEDULE_MINUTES)")
