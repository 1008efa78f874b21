"""A worker's own Prometheus metrics (`robustness worker --metrics-port PORT`): the jobs this
machine's workers ran, by kind and outcome, their run time, and the throughput of the
succeeded ones in example passes per second. Read from the job records at scrape time (each
records the worker that claimed it), so every pool process of the worker counts, whichever ran
the job, and a restarted worker still reports its history."""

from __future__ import annotations

import socket

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from store.db import JobRecord


class WorkerJobs:
    def __init__(self, db, host: str | None = None):
        self.db, self.host = db, host or socket.gethostname()

    def collect(self):
        labels = ["worker", "kind", "status"]
        jobs = GaugeMetricFamily("robustness_worker_jobs", "Jobs this worker ran", labels=labels)
        seconds = GaugeMetricFamily("robustness_worker_job_seconds", "Run time of the jobs "
                                    "this worker ran", labels=labels)
        rate = GaugeMetricFamily("robustness_worker_passes_per_second", "Example forward+"
                                 "backward passes per second of this worker's succeeded jobs",
                                 labels=["worker", "kind"])
        try:
            with self.db.session() as s:
                rows = s.execute(select(
                    JobRecord.kind, JobRecord.status, func.count(),
                    func.coalesce(func.sum(JobRecord.seconds), 0.0),
                    func.coalesce(func.sum(JobRecord.passes), 0))
                    .where(JobRecord.worker.like(f"{self.host}:%"))
                    .group_by(JobRecord.kind, JobRecord.status)).all()
                timed = s.execute(select(
                    JobRecord.kind, func.sum(JobRecord.passes), func.sum(JobRecord.seconds))
                    .where(JobRecord.worker.like(f"{self.host}:%"),
                           JobRecord.status == "succeeded", JobRecord.passes.is_not(None),
                           JobRecord.seconds > 0)
                    .group_by(JobRecord.kind)).all()
        except Exception:  # noqa: BLE001 - a scrape must not fail with the database
            return
        for kind, status, n, total, _ in rows:
            jobs.add_metric([self.host, kind, status], n)
            seconds.add_metric([self.host, kind, status], float(total))
        for kind, passes, total in timed:
            rate.add_metric([self.host, kind], float(passes) / float(total))
        yield jobs
        yield seconds
        yield rate


def serve_metrics(port: int, db, host: str | None = None):
    """Start the metrics endpoint on `port` (0: any free one); returns the HTTP server."""
    registry = CollectorRegistry()
    registry.register(WorkerJobs(db, host))
    server, _ = start_http_server(port, registry=registry)
    return server
