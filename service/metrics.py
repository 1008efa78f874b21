"""Prometheus metrics of one gateway: request counts and latencies, and job and model counts
read from the database at scrape time (so they are right whichever process changed them)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from service.retention import DiskUse
from store.db import JobRecord, ModelRecord


class _StoredCounts:
    def __init__(self, gw):
        self.db = gw.db
        self.disk = DiskUse(gw)

    def collect(self):
        jobs = GaugeMetricFamily("robustness_jobs", "Jobs by kind and status",
                                 labels=["kind", "status"])
        models = GaugeMetricFamily("robustness_models", "Registered models")
        disk = GaugeMetricFamily("robustness_tenant_disk_bytes", "Bytes of stored artifacts "
                                 "(models, reports, adversarial sets) a tenant's records use",
                                 labels=["tenant"])
        try:
            with self.db.session() as s:
                rows = s.execute(select(JobRecord.kind, JobRecord.status, func.count())
                                 .group_by(JobRecord.kind, JobRecord.status)).all()
                count = s.execute(select(func.count()).select_from(ModelRecord)).scalar_one()
            used = self.disk.by_tenant()
        except Exception:  # noqa: BLE001 - a scrape must not fail with the database
            return
        for kind, status, n in rows:
            jobs.add_metric([kind, status], n)
        models.add_metric([], count)
        for tenant, size in sorted(used.items()):
            disk.add_metric([tenant], size)
        yield jobs
        yield models
        yield disk


class Metrics:
    def __init__(self, gw):
        self.registry = CollectorRegistry()
        self.requests = Counter("robustness_http_requests", "HTTP requests",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("robustness_http_request_seconds", "HTTP request latency",
                                 ["method", "route"], registry=self.registry)
        self.registry.register(_StoredCounts(gw))

    def middleware(self):
        async def record(request, call_next):
            started = time.perf_counter()
            response = await call_next(request)
            route = request.scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.requests.labels(request.method, path, str(response.status_code)).inc()
            self.latency.labels(request.method, path).observe(time.perf_counter() - started)
            return response
        return record
