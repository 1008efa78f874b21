"""Run one stored job: claim it, call the library, store the outcome exactly once.

Liveness and progress go through a heartbeat thread that writes the latest progress to the
job record every few seconds; the library's progress callback only records numbers and, between
batches, stops the job when the heartbeat saw a cancel request, a lost claim or the time limit.
Every failure the library names (bad spec, unloadable model, missing data) and every other
exception ends the job `failed` with a readable reason; the worker process carries on.
"""

from __future__ import annotations

import importlib
import logging
import re
import threading
import time
import traceback
from collections.abc import Callable
from functools import cache
from pathlib import Path

from store import transitions
from store.kinds import KINDS, JobKind
from workers.context import WorkerContext

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


@cache
def runner(kind: JobKind) -> Callable[..., dict]:
    """The kind's runner, (ctx, job, heartbeat) -> the outcome's columns."""
    module, _, name = kind.runner.partition(":")
    return getattr(importlib.import_module(module), name)


def run_job(ctx: WorkerContext, job_id: str) -> str:
    """Returns what happened, for the task's log line."""
    token = transitions.claim(ctx.db, job_id, ctx.settings.lease_seconds)
    if token is None:
        return "not claimable (finished, cancelled or running elsewhere)"
    job = transitions.get_job(ctx.db, job_id)
    kind = KINDS.get(job.kind)
    if kind is None:  # a kind added to the gateway but not (yet) to this worker
        transitions.finish(ctx.db, job_id, token, "failed",
                           error=f"this worker cannot run jobs of kind {job.kind!r}")
        return "failed"
    beat = Heartbeat(ctx, job_id, token, kind.time_limit(ctx.settings))
    beat.start()
    try:
        outcome = runner(kind)(ctx, job, beat)
        beat.done.set()
        try:
            beat.beat()  # the last progress, before the outcome
        except Exception:  # noqa: BLE001 - progress is cosmetic; the outcome is what counts
            log.warning("last progress update of %s failed", job_id)
        ended = transitions.finish(ctx.db, job_id, token, "succeeded", **outcome)
        return "succeeded" if ended else "finished after losing its claim; outcome dropped"
    except Stop as stop:
        beat.done.set()
        if stop.reason == "claim lost":
            return "stopped: claim lost"
        status = "cancelled" if stop.reason == "cancelled" else "failed"
        transitions.finish(ctx.db, job_id, token, status, error=stop.reason, **beat.state)
        return status
    except Exception as exc:  # noqa: BLE001 - a job fails; the worker never dies
        beat.done.set()
        from robustness.errors import RobustnessError

        if isinstance(exc, RobustnessError):
            reason = str(exc)
        else:
            log.error("job %s failed:\n%s", job_id, traceback.format_exc())
            reason = f"internal error ({type(exc).__name__}: {exc})"
        reason = without_server_paths(reason, ctx.settings)
        transitions.finish(ctx.db, job_id, token, "failed", error=reason[:4000])
        return "failed"
    finally:
        beat.done.set()


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
