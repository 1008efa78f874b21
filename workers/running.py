"""Run one stored job: claim it, call the library, store the outcome exactly once.

Liveness and progress go through a heartbeat thread that writes the latest progress to the
job record every few seconds; the library's progress callback only records numbers and, between
batches, stops the job when the heartbeat saw a cancel request, a lost claim or the time limit.
Every failure the library names (bad spec, unloadable model, missing data) and every other
exception ends the job `failed` with a readable reason; the worker process carries on.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
import traceback
from pathlib import Path

from workers import jobs
from workers.cache import key_of
from workers.confine import confine_dataset_path
from workers.context import WorkerContext
from workers.db import JobRecord, ModelRecord, new_id, utcnow

log = logging.getLogger(__name__)


class Stop(Exception):
    """Raised between batches: cancelled, claim lost or out of time (`reason`)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Heartbeat(threading.Thread):
    def __init__(self, ctx: WorkerContext, job_id: str, token: str, time_limit: float):
        super().__init__(daemon=True, name=f"heartbeat-{job_id}")
        self.ctx, self.job_id, self.token = ctx, job_id, token
        self.deadline = time.monotonic() + time_limit
        self.time_limit = time_limit
        self.state: dict = {}
        self.stop_reason: str | None = None
        self.done = threading.Event()
        self.lock = threading.Lock()

    def progress(self, done: int, total: int, phase: str) -> None:
        """The library's progress callback: runs between batches."""
        with self.lock:
            self.state.update(progress_completed=done, progress_total=total, phase=phase[:100])
        if time.monotonic() > self.deadline:
            self.stop_reason = f"time limit of {self.time_limit:.0f} s exceeded"
        if self.stop_reason:
            raise Stop(self.stop_reason)

    def record(self, **values) -> None:
        with self.lock:
            self.state.update(values)

    def beat(self) -> None:
        with self.lock:
            values = dict(self.state)
        if not jobs.touch(self.ctx.db, self.job_id, self.token, **values):
            job = jobs.get_job(self.ctx.db, self.job_id)
            self.stop_reason = ("cancelled" if job is not None and job.cancel_requested
                                else "claim lost")

    def run(self) -> None:
        while not self.done.wait(self.ctx.settings.heartbeat_seconds):
            try:
                self.beat()
            except Exception:  # a database hiccup must not kill the job; the next beat retries
                log.exception("heartbeat of %s failed", self.job_id)


def run_job(ctx: WorkerContext, job_id: str) -> str:
    """Returns what happened, for the task's log line."""
    token = jobs.claim(ctx.db, job_id, ctx.settings.lease_seconds)
    if token is None:
        return "not claimable (finished, cancelled or running elsewhere)"
    job = jobs.get_job(ctx.db, job_id)
    limit = (ctx.settings.audit_time_limit if job.kind == "audit"
             else ctx.settings.training_time_limit)
    beat = Heartbeat(ctx, job_id, token, limit)
    beat.start()
    try:
        outcome = (_audit if job.kind == "audit" else _training)(ctx, job, beat)
        beat.done.set()
        try:
            beat.beat()  # the last progress, before the outcome
        except Exception:  # noqa: BLE001 - progress is cosmetic; the outcome is what counts
            log.warning("last progress update of %s failed", job_id)
        ended = jobs.finish(ctx.db, job_id, token, "succeeded", **outcome)
        return "succeeded" if ended else "finished after losing its claim; outcome dropped"
    except Stop as stop:
        beat.done.set()
        if stop.reason == "claim lost":
            return "stopped: claim lost"
        status = "cancelled" if stop.reason == "cancelled" else "failed"
        jobs.finish(ctx.db, job_id, token, status, error=stop.reason, **beat.state)
        return status
    except Exception as exc:  # noqa: BLE001 - a job fails; the worker never dies
        beat.done.set()
        from robustness.errors import RobustnessError

        if isinstance(exc, RobustnessError):
            reason = str(exc)
        else:
            log.error("job %s failed:\n%s", job_id, traceback.format_exc())
            reason = f"internal error ({type(exc).__name__}: {exc})"
        jobs.finish(ctx.db, job_id, token, "failed", error=reason[:4000])
        return "failed"
    finally:
        beat.done.set()


def _device(ctx: WorkerContext):
    from robustness.devices import pick_device

    return pick_device(ctx.settings.device)


def _model_record(ctx: WorkerContext, model_id: str | None, what: str) -> ModelRecord:
    from robustness.errors import SpecError

    with ctx.db.session() as s:
        record = s.get(ModelRecord, model_id) if model_id else None
    if record is None:
        raise SpecError(f"{what}: model {model_id!r} no longer exists")
    return record


def _load_model(ctx: WorkerContext, record: ModelRecord, device, input_shape=None):
    from robustness.models import ModelMetadata, load_model

    meta = dict(record.model_metadata)
    if meta.get("input_shape") is None and input_shape is not None:
        meta["input_shape"] = list(input_shape)

    def make():
        model = load_model(ctx.store.path(record.sha256), ModelMetadata.parse(meta), device)
        return model.eval().requires_grad_(False)

    return ctx.models.get(key_of(record.sha256, meta, str(device)), make)


def _load_data(ctx: WorkerContext, dataset_spec):
    from robustness.data import load_dataset

    root = ctx.settings.data_root
    return ctx.datasets.get(key_of(dataset_spec.model_dump(), str(root)),
                            lambda: load_dataset(dataset_spec, root))


def _audit(ctx: WorkerContext, job: JobRecord, beat: Heartbeat) -> dict:
    from safetensors.torch import save

    from robustness.audit import check_model_fits_data, model_info
    from robustness.evaluation import run_audit
    from robustness.evaluation.export import adversarial_tensors
    from robustness.spec import parse_audit_spec

    spec = parse_audit_spec(job.spec)
    confine_dataset_path(spec.dataset)
    record = _model_record(ctx, job.model_id, "model_id")
    device = _device(ctx)
    beat.record(phase="loading data")
    data = _load_data(ctx, spec.dataset)
    beat.record(phase="loading model")
    model = _load_model(ctx, record, device, input_shape=data.x.shape[1:])
    check_model_fits_data(model, data)
    info = {**model_info(model), "id": record.id}
    result = run_audit(model, data, spec, device=device, progress=beat.progress,
                       collect_adversarial=True, model_info=info)
    report = result.report
    report_sha = ctx.store.put_bytes(json.dumps(report).encode())
    adversarial_sha = ctx.store.put_bytes(save(adversarial_tensors(result, report)))
    summary = {"clean_accuracy": report["clean"]["accuracy"],
               "gate": report.get("gate"),
               "results": [{k: r.get(k) for k in ("attack", "label", "norm", "epsilon",
                                                  "accuracy")} for r in report["results"]]}
    return {"report_sha256": report_sha, "adversarial_sha256": adversarial_sha,
            "summary": summary}


def _training(ctx: WorkerContext, job: JobRecord, beat: Heartbeat) -> dict:
    from robustness.training import parse_training_spec, save_training, train_from_spec

    spec = parse_training_spec(job.spec)
    confine_dataset_path(spec.dataset)
    device = _device(ctx)
    teacher = None
    if spec.teacher_model_id:
        record = _model_record(ctx, spec.teacher_model_id, "teacher_model_id")
        teacher = _load_model(ctx, record, device, input_shape=spec.input_shape)
    history: list[dict] = []

    def on_epoch(entry: dict) -> None:
        history.append(entry)
        beat.record(history=list(history))

    result = train_from_spec(spec, data_root=ctx.settings.data_root, device=device,
                             teacher=teacher, progress=beat.progress, log=on_epoch)
    with tempfile.TemporaryDirectory() as tmp:
        weights = save_training(result, Path(tmp))
        size = weights.stat().st_size
        sha = ctx.store.put_file(weights)
        card = json.loads(weights.with_suffix(".json").read_text())
    model_id = new_id("mdl")

    def register(session) -> None:
        session.add(ModelRecord(id=model_id, tenant=job.tenant, name=card["metadata"].get("name"),
                                sha256=sha,
                                size=size, format="safetensors", model_metadata=card["metadata"],
                                card=card, source_training_id=job.id, created_at=utcnow()))

    t = card["training"]
    return {"result_model_id": model_id, "history": t["history"], "also": register,
            "summary": {"selected_epoch": t["selected_epoch"], "epochs_run": t["epochs_run"],
                        "catastrophic_overfitting": t["catastrophic_overfitting"],
                        "stopped_early": t["stopped_early"]}}

