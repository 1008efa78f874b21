"""/v1/trainings: adversarial training jobs; a succeeded one registers its model."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Response

from robustness.training import TrainingSpec
from service.auth import Submitter
from service.budget import check_batch_sizes, check_budget, training_passes
from service.gateway import GatewayDep
from service.routes import resource
from service.routes.job_resource import DRY_RUN, SUBMIT, add_job_routes, require_model, submit
from store.confine import confine_dataset_path
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
