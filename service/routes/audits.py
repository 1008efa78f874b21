"""/v1/audits: submit an ε-sweep audit of a registered model, follow it, read its report."""

from __future__ import annotations

import json
from typing import Annotated, Literal
from urllib.parse import quote, urlencode

from fastapi import Header, Query, Response
from fastapi.responses import HTMLResponse

from robustness.evaluation.report_schema import Report
from robustness.http_models import Comparison, ExamplePage
from robustness.spec import AuditSpec
from service.auth import Reader, Submitter
from service.budget import audit_passes, check_batch_sizes, check_budget
from service.gateway import Gateway, GatewayDep
from service.keys import Principal
from service.problems import BINARY_FILE, HTML_PAGE, Problem
from service.reports import adversarial_file, example_page
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
from service.routes.listing import ExamplePagingDep
from service.views import iso
from store import transitions
from store.confine import confine_dataset_path
from store.db import JobRecord
from store.kinds import AUDIT

router = resource(f"/{AUDIT.segment}", AUDIT.segment)


@router.post("", summary="Submit an audit", **SUBMIT)
def submit_audit(spec: AuditSpec, gw: GatewayDep, who: Submitter, response: Response,
                 idempotency_key: Annotated[str | None, Header()] = None,
                 dry_run: bool = DRY_RUN) -> dict:
    confine_dataset_path(spec.dataset)
    check_batch_sizes(spec, gw.settings.max_batch_size)
    passes = audit_passes(spec)
    check_budget(passes, gw.settings.max_job_passes, "audit",
                 "dataset.n, steps, restarts or the ε grid")
    require_model(gw, who.tenant, spec.model_id, "model_id")
    spec = resolve_gate(gw, who.tenant, spec)
    return submit(gw, response, who.tenant, AUDIT, spec, spec.model_id, idempotency_key,
                  passes=passes, dry_run=dry_run)


def resolve_gate(gw: Gateway, tenant: str, spec: AuditSpec) -> AuditSpec:
    """Baseline gate rules get their baseline audit's figure now, from its stored report."""
    from robustness.errors import SpecError
    from robustness.evaluation.gate import resolve_baselines

    def load(audit_id: str) -> dict:
        job = transitions.get_job(gw.db, audit_id)
        if job is None or job.kind != AUDIT.name or job.tenant != tenant:
            raise SpecError(f"gate: baseline {audit_id!r} is not an audit of yours")
        if job.status != "succeeded":
            raise SpecError(f"gate: baseline audit {audit_id!r} is {job.status}; a baseline "
                            f"needs a report")
        return _report(gw, job)

    try:
        return resolve_baselines(spec, load)
    except SpecError as exc:
        raise Problem(422, str(exc)) from None


add_job_routes(router, AUDIT)


def _succeeded(gw: Gateway, who: Principal, audit_id: str) -> JobRecord:
    return succeeded_job(gw, who.tenant, AUDIT, audit_id)


def _report(gw: Gateway, job: JobRecord) -> dict:
    return json.loads(artifact(gw, job.report_sha256, "report"))


@router.get("/{audit_id}/report", summary="The audit report (JSON)", response_model=Report)
def get_report(gw: GatewayDep, who: Reader, audit_id: str) -> Response:
    # The stored bytes are the report the worker wrote: served as they are.
    job = _succeeded(gw, who, audit_id)
    return Response(artifact(gw, job.report_sha256, "report"), media_type="application/json")


@router.get("/{audit_id}/report.html", summary="The audit report as one HTML page",
            response_class=HTMLResponse, responses=HTML_PAGE)
def get_report_html(gw: GatewayDep, who: Reader, audit_id: str,
                    epsilon: float | None = Query(None, description="the ε of the per-class "
                                                  "plots (default: the middle of the grid)"),
                    gallery_offset: int = Query(0, ge=0, le=10_000_000),
                    gallery_size: int = Query(24, ge=1, le=200, description="examples in the "
                                              "gallery: the page of /examples?misclassified="
                                              "true&breaking=true&clean_correct=true&"
                                              "order=confidence it shows")):
    from robustness.errors import SpecError
    from robustness.pages import render_audit_page
    from robustness.pages.gallery import GALLERY_FILTERS

    job = _succeeded(gw, who, audit_id)
    report = _report(gw, job)
    images = _stored_images(gw, job)
    base = f"/v1/audits/{quote(audit_id)}"

    def page(offset: int) -> str:
        query = {"gallery_offset": offset, "gallery_size": gallery_size}
        if epsilon is not None:
            query["epsilon"] = epsilon
        return f"{base}/report.html?{urlencode(query)}#gallery"

    links = {"report": f"{base}/report", "gallery_page": page,
             "examples": f"{base}/examples?" + urlencode({
                 **{k: str(v).lower() if isinstance(v, bool) else v
                    for k, v in GALLERY_FILTERS.items()},
                 "offset": gallery_offset, "limit": gallery_size})}
    try:
        return HTMLResponse(render_audit_page(report, images, epsilon=epsilon,
                                              gallery_offset=gallery_offset,
                                              gallery_size=gallery_size, links=links))
    except SpecError as exc:
        raise Problem(422, str(exc)) from None


def _stored_images(gw: Gateway, job: JobRecord):
    """The gallery's images: the stored adversarial set, read lazily (None once expired)."""
    from robustness.pages.gallery import SafetensorsImages

    if not job.adversarial_sha256 or job.adversarial_expired_at is not None:
        return None
    path = gw.store.path(job.adversarial_sha256)
    return SafetensorsImages(str(path)) if path.is_file() else None


@router.get("/{audit_id}/examples", summary="Per-example records, filtered and paginated",
            response_model=ExamplePage)
def get_examples(gw: GatewayDep, who: Reader, audit_id: str, paging: ExamplePagingDep,
                 attack: str | None = None,
                 epsilon: float | None = None,
                 misclassified: bool | None = None,
                 min_confidence: float | None = Query(None, ge=0, le=1),
                 breaking: bool = Query(False, description="one record per example and "
                                        "norm: at the smallest ε of the grid that broke it, "
                                        "the most confident attack there"),
                 clean_correct: bool | None = Query(None, description="only examples right "
                                                    "(true) or wrong (false) on the clean input"),
                 order: Literal["report", "confidence"] = Query(
                     "report", description="report order, or most confident first (the "
                     "report page's gallery: misclassified=true&breaking=true&"
                     "clean_correct=true&order=confidence)")):
    report = _report(gw, _succeeded(gw, who, audit_id))
    return example_page(report, paging, attack=attack, epsilon=epsilon,
                        misclassified=misclassified, min_confidence=min_confidence,
                        breaking=breaking, clean_correct=clean_correct, order=order)


@router.get("/{audit_id}/adversarial", summary="Adversarial examples of one (attack, ε)",
            response_class=Response, responses=BINARY_FILE)
def get_adversarial(gw: GatewayDep, who: Reader, audit_id: str, attack: str, epsilon: float,
                    format: str = Query("safetensors", pattern="^(safetensors|npz)$")):
    from safetensors.torch import load

    job = _succeeded(gw, who, audit_id)
    if job.adversarial_expired_at is not None:
        raise Problem(410, f"audit {audit_id!r}'s adversarial examples expired on "
                           f"{iso(job.adversarial_expired_at)} (ROBUSTNESS_RETENTION_DAYS); "
                           f"its report stays")
    if not job.adversarial_sha256:
        raise Problem(404, f"audit {audit_id!r} stored no adversarial examples")
    tensors = load(artifact(gw, job.adversarial_sha256, "adversarial set"))
    data, media = adversarial_file(tensors, _report(gw, job), attack, epsilon, format)
    name = quote(f"{audit_id}-{attack}-eps{epsilon:g}.{format}")
    return Response(data, media_type=media,
                    headers={"Content-Disposition": f"attachment; filename*=UTF-8''{name}"})



@router.get("/{audit_id}/compare/{other_id}.html", summary="This audit (A, the baseline) "
            "against another (B) as one HTML page: both on the same axes, with the flips",
            response_class=HTMLResponse, responses=HTML_PAGE)
def compare_audits_html(gw: GatewayDep, who: Reader, audit_id: str, other_id: str,
                        tolerance: float = Query(0.01, ge=0, le=1)):
    from robustness.errors import SpecError
    from robustness.pages import render_comparison_page

    a, b = (_report(gw, _succeeded(gw, who, i)) for i in (audit_id, other_id))
    try:
        return HTMLResponse(render_comparison_page([(audit_id, a), (other_id, b)], tolerance))
    except SpecError as exc:
        raise Problem(422, f"{other_id} cannot be compared with {audit_id}: {exc}") from None


@router.get("/{audit_id}/compare/{other_id}", summary="This audit (A) against another (B) on "
            "the same examples: deltas, flips and a verdict", response_model=Comparison)
def compare_audits(gw: GatewayDep, who: Reader, audit_id: str, other_id: str,
                   tolerance: float = Query(0.01, ge=0, le=1, description="how far an "
                                            "accuracy may fall before the verdict is "
                                            "'regressed'")):
    from robustness.errors import SpecError
    from robustness.evaluation.compare import compare_reports

    a, b = (_report(gw, _succeeded(gw, who, i)) for i in (audit_id, other_id))
    try:
        return {"a": audit_id, "b": other_id, **compare_reports(a, b, tolerance)}
    except SpecError as exc:
        raise Problem(422, f"{other_id} cannot be compared with {audit_id}: {exc}") from None
