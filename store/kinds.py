"""The kinds of job, as one table: ids, URLs, tasks, queues, time limits and runners all come
from here, so a new kind (certification, comparison) is one entry and nothing else switches on
a kind's name.

`runner` is an import path ("module:function") that only the worker resolves: the store may
not import the worker, and the gateway never runs a job.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class JobKind:
    name: str               # stored in jobs.kind
    id_prefix: str          # job ids look like aud_…
    segment: str            # the resource: /v1/<segment>/<id>, its tasks' noun
    task: str               # the Celery task that runs it
    queue: str              # the broker queue its messages wait in
    time_limit_setting: str  # the Settings field holding its time limit, in seconds
    runner: str             # "module:function" the worker calls with (ctx, job, heartbeat)
    # Which job column the record's `model_id` shows and `?model_id=` filters on: the model
    # audited, or the model a training registered.
    model_column: str = "model_id"
    # Sub-resources a succeeded job serves (link name -> path below the job's URL).
    results: tuple[tuple[str, str], ...] = ()
    # View fields and filters only this kind has.
    shows_schedule: bool = False
    shows_history: bool = False

    def time_limit(self, settings) -> float:
        return getattr(settings, self.time_limit_setting)


AUDIT = JobKind(
    name="audit", id_prefix="aud", segment="audits", task="robustness.audit",
    queue="audits", time_limit_setting="audit_time_limit",
    runner="workers.runners:run_audit_job",
    results=(("report", "/report"), ("report_html", "/report.html"),
             ("examples", "/examples"), ("adversarial", "/adversarial")),
    shows_schedule=True)

TRAINING = JobKind(
    name="training", id_prefix="trn", segment="trainings", task="robustness.training",
    queue="trainings", time_limit_setting="training_time_limit",
    runner="workers.runners:run_training_job",
    model_column="result_model_id", results=(("report_html", "/report.html"),),
    shows_history=True)

CERTIFICATION = JobKind(
    name="certification", id_prefix="crt", segment="certifications",
    task="robustness.certification", queue="certifications",
    time_limit_setting="certification_time_limit",
    runner="workers.runners:run_certification_job",
    results=(("report", "/report"), ("report_html", "/report.html")))

KINDS: dict[str, JobKind] = {k.name: k for k in (AUDIT, TRAINING, CERTIFICATION)}
# One shard of a sharded audit (store.shards, workers.shards): its own task, on the audits'
# queue, carrying (job id, shard index).
SHARD_TASK = "robustness.audit_shard"
QUEUES: tuple[str, ...] = tuple(k.queue for k in KINDS.values())

