"""/v1/trainings: adversarial training jobs; a succeeded one registers its model."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Response
from fastapi.responses import HTMLResponse

from robustness.training import TrainingSpec
from service.auth import Reader, Submitter
from service.budget import check_batch_sizes, check_budget, training_passes
from service.gateway import GatewayDep
from service.problems import HTML_PAGE
from service.routes import resource
from service.routes.job_resource import (
    DRY_RUN,
    SUBMIT,
    add_job_routes,
    get_job_or_404,
    require_model,
    submit,
)
from store.confine import confine_dataset_path
from store.db import ModelRecord
from store.kinds import TRAINING

router = resource(f"/{TRAINING.segment}", TRAINING.segment)


@router.post("", summary="Submit a training job", **SUBMIT)
def submit_training(spec: TrainingSpec, gw: GatewayDep, who: Submitter, response: Response,
                    idempotency_key: Annotated[str | None, Header()] = None,
                    dry_run: bool = DRY_RUN) -> dict:
    confine_dataset_path(spec.dataset)
    check_batch_sizes(spec, gw.settings.max_batch_size)
    passes = training_passes(spec)
    check_budget(passes, gw.settings.max_job_passes, "training",
                 "dataset.n, epochs, steps or validation (n, steps, restarts)")
    if spec.teacher_model_id is not None:
        require_model(gw, who.tenant, spec.teacher_model_id, "teacher_model_id")
    return submit(gw, response, who.tenant, TRAINING, spec, None, idempotency_key,
                  passes=passes, dry_run=dry_run)


add_job_routes(router, TRAINING)


@router.get("/{training_id}/report.html", summary="The training's history as one HTML page "
            "(while it runs too)", response_class=HTMLResponse, responses=HTML_PAGE)
def get_training_html(gw: GatewayDep, who: Reader, training_id: str):
    from robustness.pages import render_training_page

    job = get_job_or_404(gw, who.tenant, TRAINING, training_id)
    card = None
    if job.result_model_id:
        with gw.db.session() as s:
            model = s.get(ModelRecord, job.result_model_id)
        card = model.card if model is not None else None  # the model may have been deleted
    if card is None:
        spec = job.spec or {}
        card = {"metadata": spec.get("metadata") or {"architecture": spec.get("architecture")},
                "training": {"spec": spec, "method": spec.get("method"),
                             "history": job.history or []}}
    return HTMLResponse(render_training_page(card, status=job.status, job_id=job.id))
