"""The sandbox process (`workers.sandbox`): reads job ids from its worker, runs each with the
kind's runner and answers with the outcome, a failure reason, or that it stopped when asked.

It dies with its worker: the kernel kills it when the thread that started it ends
(PR_SET_PDEATHSIG; pool processes and threads start sandboxes from threads that live as long
as they do), and it exits when the job pipe closes.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable
from functools import cache
from multiprocessing.connection import Connection

from workers.sandbox import receive, send

log = logging.getLogger("workers.sandbox")


class Stop(Exception):
    """Raised between batches when the worker asked the job to stop (`reason`)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Relay:
    """The runners' `beat`: progress and records go to the worker, which owns the job record;
    a stop the worker asked for is raised at the next batch."""

    def __init__(self, inbox: Connection, outbox: Connection):
        self.inbox, self.outbox = inbox, outbox

    def progress(self, done: int, total: int, phase: str) -> None:
        send(self.outbox, progress=[done, total, phase])
        while self.inbox.poll(0):
            message = receive(self.inbox)
            if "stop" not in message:  # the worker sends nothing else while a job runs
                raise RuntimeError(f"sandbox protocol: {sorted(message)} during a job")
            raise Stop(message["stop"])

    def record(self, **values) -> None:
        send(self.outbox, record=values)


@cache
def runner(name: str) -> Callable[..., dict]:
    """The kind's runner, (ctx, job, beat) -> the outcome's columns."""
    from store.kinds import KINDS

    module, _, function = KINDS[name].runner.partition(":")
    return getattr(importlib.import_module(module), function)


def run_one(ctx, job_id: str, beat: Relay, shard: int | None = None) -> dict:
    """The job's end as a message: its outcome, that it stopped, or a failure reason. With
    `shard`, one shard of the audit `job_id` (workers.shards)."""
    from robustness.errors import RobustnessError
    from store import transitions

    try:
        job = transitions.get_job(ctx.db, job_id)
        if job is None:
            return {"error": f"job {job_id} no longer exists"}
        if shard is not None:
            from workers.runners import run_audit_shard

            return {"outcome": run_audit_shard(ctx, job, shard, beat)}
        return {"outcome": runner(job.kind)(ctx, job, beat)}
    except Stop as stop:
        return {"stopped": stop.reason}
    except RobustnessError as exc:
        return {"error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - a job fails; the sandbox serves the next one
        log.error("job %s failed:\n%s", job_id, traceback.format_exc())
        return {"error": f"internal error ({type(exc).__name__}: {exc})"}


def _die_with(parent: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # it was gone before the line above
        os._exit(1)


def main(argv: list[str]) -> int:
    inbox = Connection(int(argv[0]), writable=False)
    outbox = Connection(int(argv[1]), readable=False)
    _die_with(int(argv[2]))
    logging.basicConfig(level=logging.WARNING, format="[sandbox %(process)d] %(levelname)s %(message)s")
    from workers.context import WorkerContext
    from workers.settings import WorkerSettings

    try:
        ctx = WorkerContext(WorkerSettings.model_validate(receive(inbox)["settings"]))
        importlib.import_module("robustness.audit")  # what the first job would wait for
        send(outbox, ready=os.getpid())
        while True:
            message = receive(inbox)
            if "job" in message:  # (a stop that came after its job ended is dropped)
                job_id = message["job"]
                ended = run_one(ctx, job_id, Relay(inbox, outbox), message.get("shard"))
                try:
                    send(outbox, job=job_id, **ended)
                except (TypeError, ValueError) as exc:  # an outcome JSON cannot carry
                    log.error("job %s: outcome not serialisable: %s", job_id, exc)
                    send(outbox, job=job_id, error=f"internal error (outcome not "
                                                   f"serialisable: {exc})")
    except (EOFError, BrokenPipeError):  # the worker is gone or closed this sandbox
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
