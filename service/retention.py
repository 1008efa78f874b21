"""What is kept, and for how long: deleting a job (`DELETE /v1/<jobs>/{id}`) or a model removes
its stored bytes unless another record still refers to them (artifacts are content-addressed,
so two models or reports can share one file); `ROBUSTNESS_RETENTION_DAYS` expires the
adversarial sets of jobs finished longer ago (the largest artifacts; the reports stay); and
the disk each tenant's records use is counted for `/metrics`.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from sqlalchemy import func, select, update

from store.db import CallbackDeliveryRecord, JobRecord, ModelRecord, utcnow

log = logging.getLogger(__name__)


def forget_unused(gw, shas) -> list[str]:
    """Delete the stored bytes of each sha256 no model or job refers to any more; returns the
    ones deleted."""
    deleted = []
    for sha in {s for s in shas if s}:
        with gw.db.session() as s:
            used = s.execute(select(func.count()).select_from(ModelRecord)
                             .where(ModelRecord.sha256 == sha)).scalar_one()
            used += s.execute(select(func.count()).select_from(JobRecord).where(
                (JobRecord.report_sha256 == sha) | (JobRecord.adversarial_sha256 == sha))
            ).scalar_one()
        if not used:
            gw.store.path(sha).unlink(missing_ok=True)
            deleted.append(sha)
    return deleted


def delete_job(gw, job: JobRecord) -> list[str]:
    """Remove an ended job's record, its delivery log and the bytes only it used. A model a
    training registered is a record of its own and stays (`DELETE /v1/models/{id}`)."""
    with gw.db.session.begin() as s:
        s.execute(CallbackDeliveryRecord.__table__.delete()
                  .where(CallbackDeliveryRecord.job_id == job.id))
        s.execute(JobRecord.__table__.delete().where(JobRecord.id == job.id))
    return forget_unused(gw, [job.report_sha256, job.adversarial_sha256])


def expire_adversarial_sets(gw, now=None) -> list[str]:
    """Drop the adversarial sets of jobs finished more than ROBUSTNESS_RETENTION_DAYS ago;
    returns the jobs'ids. Their reports stay; their /adversarial answers 410."""
    days = gw.settings.retention_days
    if days is None:
        return []
    cutoff = (now or utcnow()) - timedelta(days=days)
    with gw.db.session() as s:
        old = s.execute(select(JobRecord.id, JobRecord.adversarial_sha256).where(
            JobRecord.adversarial_sha256.is_not(None), JobRecord.finished_at < cutoff)).all()
    for job_id, sha in old:
        with gw.db.session.begin() as s:
            s.execute(update(JobRecord).where(JobRecord.id == job_id)
                      .values(adversarial_sha256=None, adversarial_expired_at=utcnow()))
        forget_unused(gw, [sha])
    if old:
        log.info("retention: expired the adversarial sets of %d jobs finished before %s",
                 len(old), cutoff.isoformat())
    return [job_id for job_id, _ in old]


class DiskUse:
    """Bytes of stored artifacts each tenant's models and jobs refer to (a file two tenants
    share counts for both), recounted at most every `seconds`: a scrape stats every file."""

    def __init__(self, gw, seconds: float = 60.0):
        self.gw, self.seconds = gw, seconds
        self.at, self.value = -float("inf"), {}

    def by_tenant(self) -> dict[str, int]:
        if time.monotonic() - self.at > self.seconds:
            self.value, self.at = self._count(), time.monotonic()
        return self.value

    def _count(self) -> dict[str, int]:
        shas: dict[str, set[str]] = {}
        with self.gw.db.session() as s:
            for tenant, sha in s.execute(select(ModelRecord.tenant, ModelRecord.sha256)):
                shas.setdefault(tenant, set()).add(sha)
            for tenant, report, adversarial in s.execute(select(
                    JobRecord.tenant, JobRecord.report_sha256, JobRecord.adversarial_sha256)):
                shas.setdefault(tenant, set()).update(x for x in (report, adversarial) if x)
        out = {}
        for tenant, tenant_shas in shas.items():
            total = 0
            for sha in tenant_shas:
                try:
                    total += self.gw.store.path(sha).stat().st_size
                except (OSError, ValueError):
                    pass
            out[tenant] = total
        return out
