"""Run one stored job: claim it, have a sandbox run the library, store the outcome once.

The library runs in a sandbox process (`workers.sandbox`), since it runs the model's code. Here,
a heartbeat thread writes the latest progress the sandbox reported to the job record every few
seconds and notices a cancel request or a lost claim; the wait loop adds the time limit and has
the sandbox stop (or killed). Every failure the library names (bad spec, unloadable model,
missing data) and every other exception ends the job `failed` with a readable reason; the
worker process carries on, and a job it ended is never run again.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path

from store import transitions
from store.db import JobRecord, ModelRecord, utcnow
from store.kinds import KINDS
from store.logs import job_context
from workers.context import WorkerContext
from workers.sandbox import SANDBOXES

log = logging.getLogger(__name__)
# What a sandbox's outcome may set: the job's result columns, and a trained model's record
# (its tenant and training are the job's, whatever the sandbox says).
OUTCOME_COLUMNS = {"report_sha256", "adversarial_sha256", "summary", "result_model_id",
                   "history"}
MODEL_COLUMNS = ("id", "name", "sha256", "size", "format", "model_metadata", "card")


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
        self.record(progress_completed=done, progress_total=total, phase=phase[:100])

    def record(self, **values) -> None:
        with self.lock:
            self.state.update(values)

    def stop_requested(self) -> str | None:
        """Why the job must stop now (cancelled, claim lost, out of time), or None."""
        if self.stop_reason is None and time.monotonic() > self.deadline:
            self.stop_reason = f"time limit of {self.time_limit:.0f} s exceeded"
        return self.stop_reason

    def beat(self) -> None:
        with self.lock:
            values = dict(self.state)
        if not transitions.touch(self.ctx.db, self.job_id, self.token, **values):
            job = transitions.get_job(self.ctx.db, self.job_id)
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
    token = transitions.claim(ctx.db, job_id, ctx.settings.lease_seconds)
    if token is None:
        return "not claimable (finished, cancelled or running elsewhere)"
    job = transitions.get_job(ctx.db, job_id)
    with job_context(job.id, job.request_id):  # every log line of the job carries both ids
        log.info("%s %s: started (attempt %d)", job.kind, job.id, job.attempts)
        outcome = _run_claimed(ctx, job, token)
        log.info("%s %s: %s", job.kind, job.id, outcome)
        return outcome


def _run_claimed(ctx: WorkerContext, job: JobRecord, token: str) -> str:
    job_id = job.id
    kind = KINDS.get(job.kind)
    if kind is None:  # a kind added to the gateway but not (yet) to this worker
        transitions.finish(ctx.db, job_id, token, "failed",
                           error=f"this worker cannot run jobs of kind {job.kind!r}")
        return "failed"
    beat = Heartbeat(ctx, job_id, token, kind.time_limit(ctx.settings))
    beat.start()
    ended = SANDBOXES.run(ctx.settings, job_id, beat)
    if ended.how == "outcome":
        try:
            beat.beat()  # the last progress, before the outcome
        except Exception:  # noqa: BLE001 - progress is cosmetic; the outcome is what counts
            log.warning("last progress update of %s failed", job_id)
        outcome = {k: v for k, v in ended.value.items() if k in OUTCOME_COLUMNS}
        register = ended.value.get("register_model")
        also = None
        if register is not None:
            row = {k: register[k] for k in MODEL_COLUMNS}
            also = lambda s: s.add(ModelRecord(**row, tenant=job.tenant,
                                               source_training_id=job.id, created_at=utcnow()))
        done = transitions.finish(ctx.db, job_id, token, "succeeded", also=also, **outcome)
        return "succeeded" if done else "finished after losing its claim; outcome dropped"
    if ended.how in ("stopped", "killed"):
        if ended.value == "claim lost":
            return "stopped: claim lost"
        status = "cancelled" if ended.value == "cancelled" else "failed"
        reason = ended.value
        if ended.how == "killed":
            reason += (f" (the job did not reach its next batch within "
                       f"{ctx.settings.stop_grace_seconds:g} s, so its process was killed)")
        transitions.finish(ctx.db, job_id, token, status, error=reason, **beat.state)
        return status
    reason = without_server_paths(ended.value, ctx.settings)  # error, died
    transitions.finish(ctx.db, job_id, token, "failed", error=reason[:4000])
    return "failed"


def without_server_paths(message: str, settings) -> str:
    """A failure reason as a tenant may read it: the server's folders named, not spelled out
    (the data root's files are still named relative to it, which is all a user can act on)."""
    folders = [(settings.data_root, "<data root>"), (settings.artifacts, "<artifacts>"),
               (settings.home, "<service home>")]
    for folder, name in folders:
        for spelled in {str(folder), str(Path(folder).resolve())}:
            spelled = spelled.rstrip("/")
            if spelled:  # never "/" (every path would match)
                message = re.sub(re.escape(spelled) + r"(?=/|$|[^\w.-])", name, message)
    return message
