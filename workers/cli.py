"""`robustness worker`: a Celery worker for every job kind's queue. The library's CLI finds
this command through the `robustness.commands` entry point, so neither the library nor the
gateway imports the worker."""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time

from robustness import paths
from store.kinds import QUEUES


def add_commands(sub) -> None:
    worker = sub.add_parser("worker", help="run a Celery worker for every job kind's queue")
    worker.add_argument("--queues", default=",".join(QUEUES))
    worker.add_argument("--concurrency", type=int, default=1, help="jobs at once (processes)")
    worker.add_argument("--pool", default="prefork", choices=["prefork", "solo", "threads"])
    worker.add_argument("--loglevel", default="info")
    worker.add_argument("--data-root", help="where data sets are (default "
                        "$ROBUSTNESS_DATA_ROOT)")
    worker.add_argument("--metrics-port", dest="metrics_port", type=int,
                        help="serve this worker's Prometheus metrics (jobs run, seconds, "
                        "passes per second) on this port")
    worker.add_argument("--exit-with-parent", dest="exit_with_parent", action="store_true",
                        help=argparse.SUPPRESS)
    worker.set_defaults(func=cmd_worker)


def _exit_with_parent() -> None:
    """The embedded worker stops (warm shutdown) when the gateway that started it is gone,
    however the gateway ended: uvicorn re-raises the SIGTERM it handled, so the gateway's
    `finally` blocks do not run."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def cmd_worker(args) -> int:
    if args.data_root:
        paths.use_data_root(args.data_root)
    if args.exit_with_parent:
        _exit_with_parent()
    from workers.celery_app import app

    if args.metrics_port is not None:
        from workers.context import worker_context
        from workers.metrics import serve_metrics

        serve_metrics(args.metrics_port, worker_context().db)

    app.worker_main(["worker", "-Q", args.queues, "-c", str(args.concurrency),
                     "--pool", args.pool, "-l", args.loglevel, "--without-gossip",
                     "--without-mingle", "--without-heartbeat",
                     "-n", f"robustness-{os.getpid()}@%h"])
    return 0
