"""/v1/certifications: randomized-smoothing certification of a registered model (certified
L2 radii, Cohen et al. 2019), with the life cycle, tenancy, budgets and idempotency of audits."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Response
from fastapi.responses import HTMLResponse

from robustness.evaluation.report_schema import CertificationReport
from robustness.spec import CertifySpec
from service.auth import Reader, Submitter
from service.budget import certification_passes, check_batch_sizes, check_budget
from service.gateway import GatewayDep
from service.problems import HTML_PAGE
from service.routes import resource
from service.routes.job_resource import (
    DRY_RUN,
    SUBMIT,
    add_job_routes,
    artifact,
    require_model,
    submit,
    succeeded_job,
)
from store.confine import confine_dataset_path
from store.kinds import CERTIFICATION

router = resource(f"/{CERTIFICATION.segment}", CERTIFICATION.segment)


@router.post("", summary="Submit a certification", **SUBMIT)
def submit_certification(spec: CertifySpec, gw: GatewayDep, who: Submitter,
                         response: Response,
                         idempotency_key: Annotated[str | None, Header()] = None,
                         dry_run: bool = DRY_RUN) -> dict:
    confine_dataset_path(spec.dataset)
    check_batch_sizes(spec, gw.settings.max_batch_size)
    passes = certification_passes(spec)
    check_budget(passes, gw.settings.max_job_passes, "certification",
                 "dataset.n, n or the attack (radii, steps, draws, n)")
    require_model(gw, who.tenant, spec.model_id, "model_id")
    return submit(gw, response, who.tenant, CERTIFICATION, spec, spec.model_id,
                  idempotency_key, passes=passes, dry_run=dry_run)


add_job_routes(router, CERTIFICATION)


@router.get("/{certification_id}/report", summary="The certification report (JSON)",
            response_model=CertificationReport)
def get_certification_report(gw: GatewayDep, who: Reader,
                             certification_id: str) -> Response:
    job = succeeded_job(gw, who.tenant, CERTIFICATION, certification_id)
    return Response(artifact(gw, job.report_sha256, "report"), media_type="application/json")


@router.get("/{certification_id}/report.html",
            summary="The certification report as one HTML page, with its plot",
            response_class=HTMLResponse, responses=HTML_PAGE)
def get_certification_report_html(gw: GatewayDep, who: Reader, certification_id: str):
    import json

    from robustness.pages import render_certification_page

    job = succeeded_job(gw, who.tenant, CERTIFICATION, certification_id)
    return HTMLResponse(render_certification_page(
        json.loads(artifact(gw, job.report_sha256, "report"))))
