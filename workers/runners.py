"""What each job kind runs (named by `store.kinds`): a stored job in, one library call, the
outcome's columns out. No numerics here.

The spec is parsed, and its dataset path confined, once in this process, on purpose: the
gateway did both at submission, but a worker trusts no record it reads (a job may predate a
rule, or come from a schedule stored long ago), and the library entry points take the parsed
spec without parsing it again.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from robustness.errors import SpecError
from store.confine import confine_dataset_path
from store.db import JobRecord, ModelRecord, new_id
from workers.cache import key_of
from workers.context import WorkerContext
from workers.shards import coordinate, run_shard, shard_count


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


def _load_model(ctx: WorkerContext, record: ModelRecord, device, metadata):
    """The library's `load_model`, cached per checkpoint, metadata and device; the cached
    copy's weights are frozen, since jobs share it and only ever differentiate inputs."""
    from robustness.models import load_model

    def make():
        return load_model(ctx.store.path(record.sha256), metadata, device).requires_grad_(False)

    key = key_of(record.sha256, metadata.model_dump(mode="json"), str(device))
    return ctx.models.get(key, make)


def _load_data(ctx: WorkerContext, dataset_spec):
    from robustness.data import load_dataset

    root = ctx.settings.data_root
    return ctx.datasets.get(key_of(dataset_spec.model_dump(), str(root)),
                            lambda: load_dataset(dataset_spec, root))


def _model_and_data(ctx: WorkerContext, job: JobRecord, dataset_spec, beat):
    """The job's data and model (through this process's caches), the model's input shape
    filled in from the data as `robustness.audit.metadata_for_data` does."""
    from robustness.audit import metadata_for_data
    from robustness.models import ModelMetadata

    confine_dataset_path(dataset_spec)
    record = _model_record(ctx, job.model_id, "model_id")
    device = _device(ctx)
    beat.record(phase="loading data")
    data = _load_data(ctx, dataset_spec)
    beat.record(phase="loading model")
    metadata = metadata_for_data(ModelMetadata.parse(record.model_metadata), data)
    return record, data, _load_model(ctx, record, device, metadata), device


def run_audit_job(ctx: WorkerContext, job: JobRecord, beat) -> dict:
    from safetensors.torch import save

    from robustness.audit import audit, training_recipe
    from robustness.evaluation.export import adversarial_tensors
    from robustness.evaluation.gate import worst_check
    from robustness.spec import parse_audit_spec

    spec = parse_audit_spec(job.spec)
    record, data, model, device = _model_and_data(ctx, job, spec.dataset, beat)
    recipe = training_recipe(record.card, record.source_training_id)
    extra = {"id": record.id, **({"training": recipe} if recipe else {})}
    if shard_count(ctx.settings, len(data.x)) > 1:
        from robustness.audit import check_model_fits_data, model_info
        from robustness.memory import PeakMemory

        check_model_fits_data(model, data)
        with PeakMemory(device) as memory:  # this process's share of the audit
            result = coordinate(ctx, job, spec, model, data, device, beat,
                                {**model_info(model), **extra})
        result.report["provenance"]["memory"] = memory.figures()
    else:
        result = audit(model, data, spec, device=device, progress=beat.progress,
                       collect_adversarial=True, model_extra=extra,
                       batch_limit=ctx.settings.max_batch_size)
    report = result.report
    report_sha = ctx.store.put_bytes(json.dumps(report).encode())
    adversarial_sha = ctx.store.put_bytes(save(adversarial_tensors(result, report)))
    summary = {"clean_accuracy": report["clean"]["accuracy"],
               "gate": report.get("gate"),
               "checks": {"status": worst_check(report),
                          "not_passed": [c["id"] for c in report["checks"]
                                         if c["status"] != "pass"]},
               "results": [{k: r.get(k) for k in ("attack", "label", "norm", "epsilon",
                                                  "accuracy")} for r in report["results"]]}
    if job.schedule_id:
        summary["regression"] = _against_previous_run(ctx, job, report)
    return {"report_sha256": report_sha, "adversarial_sha256": adversarial_sha,
            "summary": summary}


def run_audit_shard(ctx: WorkerContext, job: JobRecord, index: int, beat) -> dict:
    """One shard of a sharded audit (workers.shards), claimed by the worker process."""
    from robustness.spec import parse_audit_spec
    from store import shards

    spec = parse_audit_spec(job.spec)
    record = next((r for r in shards.shards(ctx.db, job.id) if r.index == index), None)
    if record is None:
        raise SpecError(f"audit {job.id} has no shard {index}")
    _, data, model, device = _model_and_data(ctx, job, spec.dataset, beat)
    return {"result_sha256": run_shard(ctx, spec, model, data, device, record, beat.progress)}


def _against_previous_run(ctx: WorkerContext, job: JobRecord, report: dict) -> dict | None:
    """A scheduled audit against the schedule's previous succeeded run: the comparison's
    verdict under the schedule's tolerance (in the job's summary, so in its callback too)."""
    from sqlalchemy import select

    from robustness.errors import SpecError
    from robustness.evaluation.compare import compare_reports
    from store.db import ScheduleRecord

    with ctx.db.session() as s:
        previous = s.execute(select(JobRecord).where(
            JobRecord.schedule_id == job.schedule_id, JobRecord.status == "succeeded",
            JobRecord.id != job.id, JobRecord.created_at < job.created_at)
            .order_by(JobRecord.created_at.desc()).limit(1)).scalar()
        schedule = s.get(ScheduleRecord, job.schedule_id)
    if previous is None or previous.report_sha256 is None:
        return None
    tolerance = schedule.tolerance if schedule is not None else 0.01
    try:
        comparison = compare_reports(json.loads(ctx.store.read_bytes(previous.report_sha256)),
                                     report, tolerance)
    except (SpecError, OSError) as exc:
        return {"previous_audit_id": previous.id, "verdict": None, "detail": str(exc)}
    return {"previous_audit_id": previous.id, "verdict": comparison["verdict"],
            "regressed": comparison["verdict"] == "regressed", "tolerance": tolerance,
            "regressions": comparison["regressions"]}


def run_certification_job(ctx: WorkerContext, job: JobRecord, beat) -> dict:
    from robustness.certification import certify_dataset
    from robustness.spec import parse_certify_spec

    spec = parse_certify_spec(job.spec)
    record, data, model, device = _model_and_data(ctx, job, spec.dataset, beat)
    report = certify_dataset(model, data, spec, device=device, progress=beat.progress,
                             model_extra={"id": record.id})
    summary = {k: report[k] for k in ("clean_accuracy", "abstention_rate",
                                      "certified_accuracy")}
    if "attack" in report:
        summary["attacked_accuracy"] = [{k: row[k] for k in ("radius", "accuracy")}
                                        for row in report["attack"]["results"]]
    return {"report_sha256": ctx.store.put_bytes(json.dumps(report).encode()),
            "summary": summary}


def run_training_job(ctx: WorkerContext, job: JobRecord, beat) -> dict:
    from robustness.models import ModelMetadata
    from robustness.training import parse_training_spec, save_training, train_from_spec

    spec = parse_training_spec(job.spec)
    confine_dataset_path(spec.dataset)
    device = _device(ctx)
    teacher = None
    if spec.teacher_model_id:
        record = _model_record(ctx, spec.teacher_model_id, "teacher_model_id")
        metadata = ModelMetadata.parse(record.model_metadata)
        if metadata.input_shape is None and spec.input_shape is not None:
            metadata = metadata.model_copy(update={"input_shape": list(spec.input_shape)})
        teacher = _load_model(ctx, record, device, metadata)
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
    # Data, not a callable: the worker process adds the record in the transaction that ends
    # the job (`workers.running`), so the model exists exactly when the training succeeded.
    register = {"id": model_id, "name": card["metadata"].get("name"), "sha256": sha,
                "size": size, "format": "safetensors", "model_metadata": card["metadata"],
                "card": card}
    t = card["training"]
    return {"result_model_id": model_id, "history": t["history"], "register_model": register,
            "summary": {"selected_epoch": t["selected_epoch"], "epochs_run": t["epochs_run"],
                        "catastrophic_overfitting": t["catastrophic_overfitting"],
                        "stopped_early": t["stopped_early"]}}
