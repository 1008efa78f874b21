"""/v1/schedules: audits on a cron schedule; each firing is an ordinary audit that names its
`schedule_id` (`GET /v1/audits?schedule_id=`) and, with `callback_url`, is POSTed there when
it ends."""

from __future__ import annotations

from croniter import croniter
from fastapi import Response
from pydantic import Field, field_validator

from robustness.http_models import Schedule, SchedulePage
from robustness.spec import AuditSpec, CallbackUrl, Strict
from service.auth import Reader, Submitter
from service.budget import audit_passes, check_batch_sizes, check_budget
from service.gateway import GatewayDep
from service.problems import Problem
from service.quotas import check_cron_interval, check_schedules
from service.routes import V1, resource
from service.routes.audits import resolve_gate
from service.routes.job_resource import check_callback_url, require_model
from service.routes.listing import PagingDep, get_or_404, tenant_page
from service.schedules import next_fire
from service.views import iso
from store.confine import confine_dataset_path
from store.db import ScheduleRecord, new_id, utcnow
from store.kinds import AUDIT

router = resource("/schedules", "schedules")


class ScheduleSpec(Strict):
    cron: str = Field(max_length=200, description="5-field cron, UTC, e.g. '0 3 * * *'")
    audit: AuditSpec = Field(description="an audit spec, as the body of POST /v1/audits")
    callback_url: CallbackUrl = None
    tolerance: float = Field(default=0.01, ge=0, le=1, description="each run is compared "
                             "with the previous one: an accuracy falling by more than this "
                             "flags it (summary.regression, and in its callback)")

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        if not croniter.is_valid(v):
            raise ValueError(f"{v!r} is not a 5-field cron expression (minute hour "
                             f"day-of-month month day-of-week), e.g. '0 3 * * *'")
        return v


def view(r: ScheduleRecord) -> dict:
    return {"id": r.id, "cron": r.cron, "audit": r.audit, "callback_url": r.callback_url,
            "tolerance": r.tolerance,
            "next_run_at": iso(r.next_run_at), "last_run_at": iso(r.last_run_at),
            "last_audit_id": r.last_audit_id, "created_at": iso(r.created_at),
            "links": {"self": f"{V1}/schedules/{r.id}",
                      "audits": f"{V1}/{AUDIT.segment}?schedule_id={r.id}"}}


@router.post("", status_code=201, summary="Schedule a recurring audit",
             response_model=Schedule)
def create_schedule(spec: ScheduleSpec, gw: GatewayDep, who: Submitter,
                    response: Response) -> dict:
    audit = spec.audit
    # The audit's own callback_url, if any, is the schedule's (a stored audit spec holds none).
    callback_url = spec.callback_url or audit.callback_url
    check_callback_url(gw, callback_url)
    confine_dataset_path(audit.dataset)
    check_batch_sizes(audit, gw.settings.max_batch_size)
    check_budget(audit_passes(audit), gw.settings.max_job_passes, "audit",
                 "audit.dataset.n, steps, restarts or the ε grid")
    require_model(gw, who.tenant, audit.model_id, "audit.model_id")
    audit = resolve_gate(gw, who.tenant, audit)  # a fixed baseline for every firing
    now = utcnow()
    check_cron_interval(gw, spec.cron, now)
    check_schedules(gw, who.tenant)
    record = ScheduleRecord(id=new_id("sch"), tenant=who.tenant, cron=spec.cron,
                            audit=audit.model_dump(mode="json", exclude_unset=True,
                                                   exclude={"callback_url"}),
                            callback_url=callback_url, tolerance=spec.tolerance,
                            next_run_at=next_fire(spec.cron, now),
                            created_at=now)
    with gw.db.session.begin() as s:
        s.add(record)
    response.headers["Location"] = f"{V1}/schedules/{record.id}"
    return view(record)


@router.get("", summary="List schedules", response_model=SchedulePage)
def list_schedules(gw: GatewayDep, who: Reader, paging: PagingDep):
    return tenant_page(gw, who.tenant, ScheduleRecord, view, paging)


@router.get("/{schedule_id}", summary="Get a schedule", response_model=Schedule)
def get_schedule(gw: GatewayDep, who: Reader, schedule_id: str):
    return view(get_or_404(gw, who.tenant, ScheduleRecord, schedule_id, "schedule"))


@router.delete("/{schedule_id}", status_code=204, summary="Delete a schedule (its audits stay)")
def delete_schedule(gw: GatewayDep, who: Submitter, schedule_id: str):
    with gw.db.session.begin() as s:
        record = s.get(ScheduleRecord, schedule_id)
        if record is None or record.tenant != who.tenant:
            raise Problem(404, f"no schedule {schedule_id!r}")
        s.delete(record)
    return Response(status_code=204)

