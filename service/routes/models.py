"""/v1/models: register a checkpoint (streamed to the artifact store), list, get, delete.

Registration checks what can be checked without running the model: the metadata, the file's
format from its content (never unpickling anything) and, for weights-only formats, that the
architecture is registered. Loading and the first forward pass happen in the worker, where a
checkpoint that cannot run fails its job with the reason.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import File, Form, UploadFile
from fastapi.responses import Response
from sqlalchemy import select

from robustness.errors import ModelLoadError
from robustness.http_models import Model, ModelPage
from robustness.models import ModelMetadata
from robustness.models.formats import SAFETENSORS, STATE_DICT, detect_format
from robustness.models.registry import check_architecture, default_input_shape
from service.auth import Reader, Submitter
from service.gateway import GatewayDep
from service.problems import Problem
from service.quotas import check_models
from service.retention import forget_unused
from service.routes import resource
from service.routes.listing import PagingDep, get_or_404, tenant_page
from service.views import model_view
from store.artifacts import TooLarge
from store.db import JobRecord, ModelRecord, ScheduleRecord, new_id, utcnow

router = resource("/models", "models")
MODEL = {"response_model": Model, "response_model_exclude_unset": True}
CHUNK = 1 << 20


def _metadata(raw: str | None) -> ModelMetadata:
    if raw is None or not raw.strip():
        return ModelMetadata()
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise Problem(422, f"metadata: not valid JSON ({exc.msg} at position {exc.pos})")
    if not isinstance(data, dict):
        raise Problem(422, "metadata: must be a JSON object")
    try:
        return ModelMetadata.parse(data)
    except ModelLoadError as exc:
        raise Problem(422, f"metadata: {exc}")


@router.post("", status_code=201, summary="Register a model checkpoint", **MODEL)
def upload_model(file: Annotated[UploadFile, File(description="safetensors, .pt2 "
                                                    "(torch.export), TorchScript or .pt "
                                                    "state_dict")],
                 gw: GatewayDep, who: Submitter,
                 metadata: Annotated[str | None, Form(description="JSON: name, architecture, "
                                                      "num_classes, input_shape, "
                                                      "preprocessing, labels")] = None):
    meta = _metadata(metadata)

    def chunks():
        while block := file.file.read(CHUNK):
            yield block

    # The server has spooled the upload (after the key was checked, and counted against the
    # limit as it streamed) to a temporary file; copy it in chunks while hashing
    # (a sync route, so this runs in the thread pool, not on the event loop).
    try:
        sha, size, new = gw.store.put_chunks(chunks(), gw.settings.max_upload_bytes)
    except TooLarge as exc:
        raise Problem(413, f"file: {exc}")
    if size == 0:
        if new:
            forget_unused(gw, [sha])
        raise Problem(422, "file: is empty")
    path = gw.store.path(sha)
    try:
        fmt = detect_format(path)
        if fmt in (SAFETENSORS, STATE_DICT):
            if not meta.architecture:
                raise ModelLoadError(f"metadata.architecture: required for a weights-only "
                                     f"{fmt} checkpoint (a registry name such as "
                                     f"madry_mnist, or upload a .pt2 torch.export archive)")
            check_architecture(meta.architecture)
            if meta.num_classes is None:
                raise ModelLoadError("metadata.num_classes: required for a weights-only "
                                     "checkpoint")
            if meta.input_shape is None and default_input_shape(meta.architecture) is None:
                raise ModelLoadError(f"metadata.input_shape: required for {meta.architecture}")
    except ModelLoadError as exc:
        if new:  # bytes that were already stored (another model, a report) stay
            forget_unused(gw, [sha])
        raise Problem(422, str(exc))
    record = ModelRecord(id=new_id("mdl"), tenant=who.tenant, name=meta.name or file.filename,
                         sha256=sha,
                         size=size, format=fmt, model_metadata=meta.model_dump(exclude_none=True),
                         created_at=utcnow())
    with gw.db.session.begin() as s:
        s.add(record)
    return model_view(record)


# Checked before the upload's body is read (service.request_body), so that a tenant at its
# quota cannot make the gateway spool a file only to refuse it.
upload_model.before_body = lambda request, who: check_models(request.app.state.gw, who.tenant)


@router.get("", summary="List models", response_model=ModelPage,
            response_model_exclude_unset=True)
def list_models(gw: GatewayDep, who: Reader, paging: PagingDep):
    return tenant_page(gw, who.tenant, ModelRecord, model_view, paging)


@router.get("/{model_id}", summary="Get a model", **MODEL)
def get_model(gw: GatewayDep, who: Reader, model_id: str):
    return model_view(get_or_404(gw, who.tenant, ModelRecord, model_id, "model"), card=True)


@router.delete("/{model_id}", status_code=204, summary="Delete a model")
def delete_model(gw: GatewayDep, who: Submitter, model_id: str):
    with gw.db.session.begin() as s:
        record = s.get(ModelRecord, model_id)
        if record is None or record.tenant != who.tenant:
            raise Problem(404, f"no model {model_id!r}")
        active = s.execute(select(JobRecord.id).where(
            JobRecord.model_id == model_id,
            JobRecord.status.in_(("queued", "running"))).limit(1)).scalar()
        if active:
            raise Problem(409, f"model {model_id!r} is used by job {active!r}, which is "
                               f"queued or running; cancel it or wait for it to finish")
        schedule = next((r.id for r in s.execute(select(ScheduleRecord)).scalars()
                         if r.audit.get("model_id") == model_id), None)
        if schedule:
            raise Problem(409, f"model {model_id!r} is audited by schedule {schedule!r}; "
                               f"delete the schedule first")
        sha = record.sha256
        s.delete(record)
    forget_unused(gw, [sha])
    return Response(status_code=204)
