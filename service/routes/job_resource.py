"""What every job kind's resource shares: submit (202 + Location + Retry-After), and the
list, status and cancel routes, generated for a kind from its `store.kinds` entry. A kind's
own module adds its submit route (its spec and checks) and its result sub-resources."""

from __future__ import annotations

from fastapi import APIRouter, Path, Query, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from robustness.http_models import CostEstimate, Deliveries, Job, JobPage, JobStatus
from service.auth import Reader, Submitter
from service.budget import estimate, retry_after
from service.callbacks import Blocked, check_url, deliveries, shown_status
from service.gateway import Gateway, GatewayDep
from service.problems import Problem
from service.quotas import check_unfinished_jobs
from service.retention import delete_job
from service.routes.listing import PagingDep, page
from service.views import job_path, job_view
from store import transitions
from store.db import FINAL_STATES, JobRecord, ModelRecord
from store.kinds import JobKind
from store.logs import REQUEST_ID
from store.queue import send

JOB = {"response_model": Job, "response_model_exclude_unset": True}
# A submit route: the job (202), or with ?dry_run=true its cost (200).
SUBMIT = {"response_model": Job | CostEstimate, "response_model_exclude_unset": True,
          "status_code": 202,
          "responses": {200: {"model": CostEstimate, "description": "dry_run=true: what the "
                              "job would cost; nothing is stored or queued"}}}
DRY_RUN = Query(False, description="check the job and answer its cost (passes, the limit "
                "left, an estimated duration at this deployment's measured throughput), "
                "without storing or queueing it")


def require_model(gw: Gateway, tenant: str, model_id: str | None, field: str) -> None:
    if model_id is None:
        raise Problem(422, f"{field}: required (the id of a registered model)")
    with gw.db.session() as s:
        record = s.get(ModelRecord, model_id)
    if record is None or record.tenant != tenant:
        raise Problem(422, f"{field}: no model {model_id!r} is registered")


def check_callback_url(gw: Gateway, url: str | None) -> None:
    if url is not None:
        try:
            check_url(url, gw.settings)
        except Blocked as exc:
            raise Problem(422, str(exc)) from None


def _accepted(gw: Gateway, response: Response, kind: JobKind, job: JobRecord,
              replayed: bool) -> dict:
    response.status_code = 202
    response.headers["Location"] = job_path(kind, job.id)
    response.headers["Retry-After"] = retry_after(gw, job)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return job_view(job)


def submit(gw: Gateway, response: Response, tenant: str, kind: JobKind, spec,
           model_id: str | None, idempotency_key: str | None = None, *,
           passes: int | None = None, dry_run: bool = False) -> dict:
    """Store and enqueue the job. With an Idempotency-Key, a retry of the same request (same
    tenant, key and body) gets the job the first one created instead of a second job. A dry
    run stops after every check and answers 200 with the cost instead."""
    if dry_run:
        check_callback_url(gw, spec.callback_url)
        response.status_code = 200
        return estimate(gw, kind.name, passes)
    # The callback URL may hold the receiver's secret: it stays out of the spec (and so out
    # of the report, which is shared more widely than the job).
    body = spec.model_dump(mode="json", exclude_unset=True, exclude={"callback_url"})
    callback_url = spec.callback_url
    check_callback_url(gw, callback_url)
    if idempotency_key is not None and not 0 < len(idempotency_key) <= 200:
        raise Problem(422, "Idempotency-Key: must be 1 to 200 characters")
    replay = _replay(gw, tenant, kind, idempotency_key, body, callback_url)
    if replay is None:
        check_unfinished_jobs(gw, tenant)
        try:
            job = transitions.create_job(gw.db, kind.name, body, model_id, tenant=tenant,
                                         idempotency_key=idempotency_key,
                                         callback_url=callback_url, passes=passes,
                                         request_id=REQUEST_ID.get())
        except IntegrityError:  # a concurrent retry with the same key won the race
            replay = _replay(gw, tenant, kind, idempotency_key, body, callback_url)
            if replay is None:
                raise
        else:
            send(gw.celery, gw.db, job)
            return _accepted(gw, response, kind, transitions.get_job(gw.db, job.id), False)
    return _accepted(gw, response, kind, replay, True)


def _replay(gw: Gateway, tenant: str, kind: JobKind, key: str | None,
            body: dict, callback_url: str | None) -> JobRecord | None:
    if key is None:
        return None
    with gw.db.session() as s:
        job = s.execute(select(JobRecord).where(JobRecord.tenant == tenant,
                                                JobRecord.idempotency_key == key)).scalar()
    if job is not None and (job.kind != kind.name or job.spec != body
                            or job.callback_url != callback_url):
        raise Problem(422, f"Idempotency-Key: {key!r} was used for another request "
                           f"({job.kind} {job.id}); use a new key for a new job")
    return job


def get_job_or_404(gw: Gateway, tenant: str, kind: JobKind, job_id: str) -> JobRecord:
    job = transitions.get_job(gw.db, job_id)
    if job is None or job.kind != kind.name or job.tenant != tenant:
        raise Problem(404, f"no {kind.name} {job_id!r}")
    return job


def succeeded_job(gw: Gateway, tenant: str, kind: JobKind, job_id: str) -> JobRecord:
    """The job, once it has succeeded (its results exist then): else 404 or 409."""
    job = get_job_or_404(gw, tenant, kind, job_id)
    if job.status != "succeeded":
        detail = f"{kind.name} {job_id!r} is {job.status}"
        if job.status == "failed":
            detail += f": {job.error}"
        raise Problem(409, detail + "; the report exists once it has succeeded")
    return job


def artifact(gw: Gateway, sha: str, what: str) -> bytes:
    try:
        return gw.store.read_bytes(sha)
    except FileNotFoundError:
        raise Problem(410, f"the stored {what} ({sha}) is missing from the artifact store") \
            from None


def add_job_routes(router: APIRouter, kind: JobKind) -> None:
    """GET /v1/<kinds>, GET /v1/<kinds>/{id} and POST /v1/<kinds>/{id}/cancel."""
    noun, nouns = kind.name, kind.segment
    # The id is named for the kind in paths and docs (/v1/audits/{audit_id}).
    job_id_param = Path(alias=f"{noun}_id")
    item = f"/{{{noun}_id}}"

    @router.get("", summary=f"List {nouns}", response_model=JobPage,
                response_model_exclude_unset=True, name=f"list_{nouns}")
    def list_jobs(gw: GatewayDep, who: Reader, paging: PagingDep,
                  status: JobStatus | None = None,
                  model_id: str | None = None,
                  schedule_id: str | None = Query(None, include_in_schema=kind.shows_schedule)
                  ) -> dict:
        query = select(JobRecord).where(JobRecord.kind == noun, JobRecord.tenant == who.tenant)
        if status is not None:
            query = query.where(JobRecord.status == status)
        if model_id is not None:
            query = query.where(getattr(JobRecord, kind.model_column) == model_id)
        if schedule_id is not None and kind.shows_schedule:
            query = query.where(JobRecord.schedule_id == schedule_id)
        return page(gw, query, JobRecord, job_view, paging)

    @router.get(item, summary=f"{noun.capitalize()} status and progress",
                name=f"get_{noun}", **JOB)
    def get_job(gw: GatewayDep, who: Reader, response: Response,
                job_id: str = job_id_param) -> dict:
        job = get_job_or_404(gw, who.tenant, kind, job_id)
        if job.status not in FINAL_STATES:
            response.headers["Retry-After"] = retry_after(gw, job)
        return job_view(job)

    @router.get(item + "/deliveries", summary=f"Every attempt at the {noun}'s callback",
                response_model=Deliveries, name=f"get_{noun}_deliveries")
    def get_deliveries(gw: GatewayDep, who: Reader, paging: PagingDep,
                       job_id: str = job_id_param) -> dict:
        job = get_job_or_404(gw, who.tenant, kind, job_id)
        every = deliveries(gw.db, job.id)
        return {"callback_url": job.callback_url,
                "status": shown_status(job.callback_status) if job.callback_url else None,
                **paging.answer(every[paging.offset:paging.offset + paging.limit], len(every))}

    @router.delete(item, status_code=204, summary=f"Delete an ended {noun} and its "
                   f"stored results", name=f"delete_{noun}")
    def delete(gw: GatewayDep, who: Submitter, job_id: str = job_id_param) -> Response:
        job = get_job_or_404(gw, who.tenant, kind, job_id)
        if job.status not in FINAL_STATES:
            raise Problem(409, f"{noun} {job_id!r} is {job.status}; cancel it first, then "
                               f"delete it once it has ended")
        delete_job(gw, job)
        return Response(status_code=204)

    @router.post(item + "/cancel", status_code=202, summary=f"Cancel a {noun}",
                 name=f"cancel_{noun}", **JOB)
    def cancel_job(gw: GatewayDep, who: Submitter, job_id: str = job_id_param) -> dict:
        job = get_job_or_404(gw, who.tenant, kind, job_id)
        if job.status in ("succeeded", "failed"):
            raise Problem(409, f"{noun} {job_id!r} already {job.status}; nothing to cancel")
        transitions.request_cancel(gw.db, job_id)
        return job_view(transitions.get_job(gw.db, job_id))
