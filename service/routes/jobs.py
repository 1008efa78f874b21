"""What audits and trainings share: submit (202 + Location + Retry-After), list, status,
cancel. Each resource module passes its kind and its spec parser."""

from __future__ import annotations

from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from service.problems import Problem
from service.state import Gateway
from service.views import job_path, job_view
from workers import jobs
from workers.db import JobRecord, ModelRecord
from workers.reconcile import send

RETRY_AFTER = "2"
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


def require_model(gw: Gateway, tenant: str, model_id: str | None, field: str) -> None:
    if model_id is None:
        raise Problem(422, f"{field}: required (the id of a registered model)")
    with gw.db.session() as s:
        record = s.get(ModelRecord, model_id)
    if record is None or record.tenant != tenant:
        raise Problem(422, f"{field}: no model {model_id!r} is registered")


def submit(gw: Gateway, tenant: str, kind: str, spec, model_id: str | None,
           idempotency_key: str | None = None) -> JSONResponse:
    """Store and enqueue the job. With an Idempotency-Key, a retry of the same request (same
    tenant, key and body) gets the job the first one created instead of a second job."""
    body = spec.model_dump(mode="json", exclude_unset=True)
    if idempotency_key is not None and not 0 < len(idempotency_key) <= 200:
        raise Problem(422, "Idempotency-Key: must be 1 to 200 characters")
    replay = _replay(gw, tenant, kind, idempotency_key, body)
    if replay is not None:
        return replay
    try:
        job = jobs.create_job(gw.db, kind, body, model_id, tenant=tenant,
                              idempotency_key=idempotency_key)
    except IntegrityError:  # a concurrent retry with the same key won the race
        replay = _replay(gw, tenant, kind, idempotency_key, body)
        if replay is None:
            raise
        return replay
    send(gw.celery, gw.db, job)
    job = jobs.get_job(gw.db, job.id)
    return JSONResponse(job_view(job), status_code=202,
                        headers={"Location": job_path(job), "Retry-After": RETRY_AFTER})


def _replay(gw: Gateway, tenant: str, kind: str, key: str | None, body: dict):
    if key is None:
        return None
    with gw.db.session() as s:
        job = s.execute(select(JobRecord).where(JobRecord.tenant == tenant,
                                                JobRecord.idempotency_key == key)).scalar()
    if job is None:
        return None
    if job.kind != kind or job.spec != body:
        raise Problem(422, f"Idempotency-Key: {key!r} was used for another request "
                           f"({job.kind} {job.id}); use a new key for a new job")
    return JSONResponse(job_view(job), status_code=202,
                        headers={"Location": job_path(job), "Retry-After": RETRY_AFTER,
                                 "Idempotent-Replayed": "true"})


def get_job_or_404(gw: Gateway, tenant: str, kind: str, job_id: str) -> JobRecord:
    job = jobs.get_job(gw.db, job_id)
    if job is None or job.kind != kind or job.tenant != tenant:
        raise Problem(404, f"no {kind} {job_id!r}")
    return job


def status_response(job: JobRecord) -> JSONResponse:
    headers = {} if job.status in ("succeeded", "failed", "cancelled") else \
        {"Retry-After": RETRY_AFTER}
    return JSONResponse(job_view(job), headers=headers)


def cancel(gw: Gateway, tenant: str, kind: str, job_id: str) -> JSONResponse:
    job = get_job_or_404(gw, tenant, kind, job_id)
    if job.status in ("succeeded", "failed"):
        raise Problem(409, f"{kind} {job_id!r} already {job.status}; nothing to cancel")
    jobs.request_cancel(gw.db, job_id)
    return JSONResponse(job_view(jobs.get_job(gw.db, job_id)), status_code=202)


def list_jobs(gw: Gateway, tenant: str, kind: str, status: str | None, model_id: str | None,
              limit: int, offset: int, schedule_id: str | None = None) -> dict:
    query = select(JobRecord).where(JobRecord.kind == kind, JobRecord.tenant == tenant)
    if status is not None:
        if status not in STATUSES:
            raise Problem(422, f"status: must be one of {', '.join(STATUSES)}")
        query = query.where(JobRecord.status == status)
    if model_id is not None:
        column = JobRecord.model_id if kind == "audit" else JobRecord.result_model_id
        query = query.where(column == model_id)
    if schedule_id is not None:
        query = query.where(JobRecord.schedule_id == schedule_id)
    with gw.db.session() as s:
        rows = s.execute(query.order_by(JobRecord.created_at.desc(), JobRecord.id)
                         .limit(limit).offset(offset)).scalars().all()
    return {"items": [job_view(j) for j in rows], "limit": limit, "offset": offset}

