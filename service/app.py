"""The FastAPI gateway: `create_app(settings)` wires routes, problem+json errors, metrics and
housekeeping: three threads, each on its own so that none can hold up another: the
reconciler re-enqueues jobs whose message was lost (the database is the truth), the scheduler
fires due schedules, and the callback dispatcher hands finished jobs' callbacks to their own
pool (`service.callbacks`), where a slow receiver holds one pool thread until its deadline."""

from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi

from robustness.http_models import ProblemDetails
from service import problems, request_ids
from service.auth import ensure_admin_key
from service.callbacks import CallbackSender
from service.gateway import Gateway
from service.metrics import Metrics
from service.problems import PROBLEMS
from service.reconcile import reconcile
from service.retention import expire_adversarial_sets
from service.routes import (
    V1,
    audits,
    certifications,
    health,
    keys,
    metrics,
    models,
    schedules,
    trainings,
    webhooks,
)
from service.schedules import fire_due
from service.settings import GatewaySettings, get_gateway_settings
from service.webhooks import check_secret
from store.artifacts import ArtifactStore
from store.db import Database
from store.queue import make_celery

log = logging.getLogger(__name__)


class Periodic(threading.Thread):
    """One housekeeping step, every `seconds`, on a thread of its own."""

    def __init__(self, name: str, seconds: float, step, stopped: threading.Event):
        super().__init__(daemon=True, name=name)
        self.seconds, self.step, self.stopped = seconds, step, stopped

    def run(self) -> None:
        while not self.stopped.wait(self.seconds):
            try:
                self.step()
            except Exception:
                log.exception("%s failed; retrying next pass", self.name)


def housekeeping(gw: Gateway, stopped: threading.Event, callbacks: CallbackSender):
    s = gw.settings
    return [Periodic("reconciler", s.reconcile_seconds,
                     lambda: reconcile(gw.celery, gw.db, lease_seconds=s.lease_seconds,
                                       grace_seconds=max(s.reconcile_seconds, 5.0),
                                       broker_url=s.broker_url, max_attempts=s.max_attempts),
                     stopped),
            Periodic("scheduler", s.reconcile_seconds, lambda: fire_due(gw), stopped),
            Periodic("callbacks", s.reconcile_seconds, callbacks.dispatch, stopped),
            Periodic("retention", max(s.reconcile_seconds, 60.0),
                     lambda: expire_adversarial_sets(gw), stopped)]


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or get_gateway_settings()
    if settings.webhook_secret:
        check_secret(settings.webhook_secret)  # a clear error now, not a failed delivery later
    gw = Gateway(settings=settings, db=Database(settings.sqlalchemy_url),
                 store=ArtifactStore(settings.artifacts), celery=make_celery(settings))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        stopped, callbacks = threading.Event(), CallbackSender(gw)
        for thread in housekeeping(gw, stopped, callbacks):
            thread.start()
        yield
        stopped.set()
        callbacks.close()
        gw.db.dispose()

    app = FastAPI(title="Robustness audit service", version="1",
                  description="Adversarial-robustness audits and adversarial training of "
                              "PyTorch image classifiers.", lifespan=lifespan,
                  responses=PROBLEMS,
                  # Operation ids are the route functions' names: submit_audit, get_report, ...
                  generate_unique_id_function=lambda route: route.name)
    app.state.gw = gw
    app.state.admin_key, app.state.admin_key_generated = ensure_admin_key(settings, gw.db)
    app.state.metrics = Metrics(gw)
    app.middleware("http")(app.state.metrics.middleware())
    app.add_middleware(request_ids.RequestIds)  # outermost: ids every other log line
    problems.install(app)
    v1 = APIRouter(prefix=V1)
    for module in (models, audits, trainings, certifications, schedules, keys, webhooks,
                   health):
        v1.include_router(module.router)
    app.include_router(v1)
    app.include_router(metrics.router)

    def openapi():
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            problem = ProblemDetails.model_json_schema(
                ref_template="#/components/schemas/{model}")
            components.update(problem.pop("$defs", {}))
            components["ProblemDetails"] = problem
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    return app
