"""The FastAPI gateway: `create_app(settings)` wires routes, problem+json errors, metrics and
a housekeeping thread: it re-enqueues jobs whose message was lost (the database is the
truth), fires due schedules and delivers completion callbacks."""

from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi

from service import problems
from service.auth import ensure_admin_key
from service.gateway import Gateway
from service.metrics import Metrics
from service.problems import PROBLEMS
from service.reconcile import reconcile
from service.routes import V1, audits, health, keys, metrics, models, schedules, trainings
from service.schedules import deliver_callbacks, fire_due
from service.schemas import ProblemDetails
from service.settings import GatewaySettings, get_gateway_settings
from store.artifacts import ArtifactStore
from store.db import Database
from store.queue import make_celery

log = logging.getLogger(__name__)


class Housekeeper(threading.Thread):
    """Every few seconds: re-enqueue lost jobs, fire due schedules, deliver callbacks."""

    def __init__(self, gw: Gateway):
        super().__init__(daemon=True, name="housekeeper")
        self.gw = gw
        self.stopped = threading.Event()

    def run(self) -> None:
        s = self.gw.settings
        while not self.stopped.wait(s.reconcile_seconds):
            for step in (lambda: reconcile(self.gw.celery, self.gw.db,
                                           lease_seconds=s.lease_seconds,
                                           grace_seconds=max(s.reconcile_seconds, 5.0),
                                           broker_url=s.broker_url,
                                           max_attempts=s.max_attempts),
                         lambda: fire_due(self.gw),
                         lambda: deliver_callbacks(self.gw)):
                try:
                    step()
                except Exception:
                    log.exception("housekeeping step failed; retrying next pass")


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or get_gateway_settings()
    gw = Gateway(settings=settings, db=Database(settings.sqlalchemy_url),
                 store=ArtifactStore(settings.artifacts), celery=make_celery(settings))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        housekeeper = Housekeeper(gw)
        housekeeper.start()
        yield
        housekeeper.stopped.set()
        gw.db.dispose()

    app = FastAPI(title="Robustness audit service", version="1",
                  description="Adversarial-robustness audits and adversarial training of "
                              "PyTorch image classifiers.", lifespan=lifespan,
                  responses=PROBLEMS,
                  # Operation ids are the route functions' names: submit_audit, get_report, ...
                  generate_unique_id_function=lambda route: route.name)
    app.state.gw = gw
    app.state.admin_key = ensure_admin_key(settings, gw.db)
    app.state.metrics = Metrics(gw.db)
    app.middleware("http")(app.state.metrics.middleware())
    problems.install(app)
    v1 = APIRouter(prefix=V1)
    for module in (models, audits, trainings, schedules, keys, health):
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
