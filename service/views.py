"""JSON views of stored records: what GET returns for a model or a job."""

from __future__ import annotations

from datetime import UTC, datetime

from service.callbacks import shown_status
from service.routes import V1
from store.db import JobRecord, ModelRecord
from store.kinds import KINDS, JobKind


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite hands back naive datetimes; they were stored in UTC
        value = value.replace(tzinfo=UTC)
    return value.isoformat().replace("+00:00", "Z")


def model_view(r: ModelRecord, card: bool = False) -> dict:
    out = {"id": r.id, "name": r.name, "sha256": r.sha256, "size": r.size, "format": r.format,
           "metadata": r.model_metadata, "source_training_id": r.source_training_id,
           "created_at": iso(r.created_at), "links": {"self": f"{V1}/models/{r.id}"}}
    if card and r.card is not None:
        out["card"] = r.card
    return out


def job_path(kind: JobKind, job_id: str) -> str:
    return f"{V1}/{kind.segment}/{job_id}"


def job_view(job: JobRecord) -> dict:
    kind = KINDS[job.kind]
    total, done = job.progress_total or 0, job.progress_completed or 0
    base = job_path(kind, job.id)
    out = {
        "id": job.id, "kind": job.kind, "status": job.status,
        "progress": {"completed": done, "total": total,
                     # a training that stopped early has done all it will do
                     "fraction": 1.0 if job.status == "succeeded" else
                     (round(done / total, 4) if total else 0.0),
                     "phase": job.phase},
        "error": job.error, "cancel_requested": job.cancel_requested,
        "attempts": job.attempts, "spec": job.spec,
        "created_at": iso(job.created_at), "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at), "seconds": job.seconds,
        "summary": job.summary,
        "links": {"self": base, "cancel": f"{base}/cancel"},
        "model_id": getattr(job, kind.model_column),
    }
    if job.request_id:
        out["request_id"] = job.request_id
    if kind.shows_schedule:
        out["schedule_id"] = job.schedule_id
    if job.callback_url:
        out["callback"] = {"url": job.callback_url, "status": shown_status(job.callback_status),
                           "attempts": job.callback_attempts}
        if job.callback_status is None and job.callback_next_at is not None:
            out["callback"]["next_attempt_at"] = iso(job.callback_next_at)
    if kind.shows_history:
        out["history"] = job.history or []
    if job.status == "succeeded":
        out["links"].update({name: base + suffix for name, suffix in kind.results})
    if kind.model_column == "result_model_id" and job.result_model_id:
        out["links"]["model"] = f"{V1}/models/{job.result_model_id}"
    return out
