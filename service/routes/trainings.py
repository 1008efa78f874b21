"""/v1/trainings: adversarial training jobs; a succeeded one registers its model."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request

from robustness.training import TrainingSpec, parse_training_spec
from service.auth import Reader, Submitter
from service.budget import check_batch_sizes, check_budget, training_passes
from service.routes import jobs
from service.routes.body import read_json
from service.state import GatewayDep
from workers.confine import confine_dataset_path

router = APIRouter(prefix="/v1/trainings", tags=["trainings"])
KIND = "training"


@router.post("", status_code=202, summary="Submit a training job",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": {"$ref": "#/components/schemas/"
                                                         "TrainingSpec"}}}}})
async def submit_training(gw: GatewayDep, who: Submitter, request: Request,
                          idempotency_key: Annotated[str | None, Header()] = None):
    spec = parse_training_spec(await read_json(request))
    confine_dataset_path(spec.dataset)
    check_batch_sizes(spec, gw.settings.max_batch_size)
    check_budget(training_passes(spec), gw.settings.max_job_passes, "training",
                 "dataset.n, epochs or steps")
    if spec.teacher_model_id is not None:
        jobs.require_model(gw, who.tenant, spec.teacher_model_id, "teacher_model_id")
    return jobs.submit(gw, who.tenant, KIND, spec, None, idempotency_key)


@router.get("", summary="List trainings")
def list_trainings(gw: GatewayDep, who: Reader, status: str | None = None,
                   model_id: str | None = None,
                   limit: int = Query(100, ge=1, le=1000),
                offset: int = Query(0, ge=0, le=10**9)):
    return jobs.list_jobs(gw, who.tenant, KIND, status, model_id, limit, offset)


@router.get("/{training_id}", summary="Training status, progress and per-epoch history")
def get_training(gw: GatewayDep, who: Reader, training_id: str):
    return jobs.status_response(jobs.get_job_or_404(gw, who.tenant, KIND, training_id))


@router.post("/{training_id}/cancel", status_code=202, summary="Cancel a training")
def cancel_training(gw: GatewayDep, who: Submitter, training_id: str):
    return jobs.cancel(gw, who.tenant, KIND, training_id)


SCHEMAS = {"TrainingSpec": TrainingSpec}
