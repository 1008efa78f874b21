"""/v1/health (database and broker reachable) and /metrics (Prometheus text format)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from service.auth import Admin
from service.state import Gateway, GatewayDep

router = APIRouter(tags=["health"])


def _check_broker(gw: Gateway) -> str:
    try:
        with gw.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return "ok"
    except Exception as exc:  # noqa: BLE001 - health reports, never raises
        return f"unreachable ({type(exc).__name__})"


@router.get("/v1/health", summary="Liveness of the gateway, its database and its broker")
def health(gw: GatewayDep):
    try:
        with gw.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        database = "ok"
    except Exception as exc:  # noqa: BLE001 - health reports, never raises
        database = f"unreachable ({type(exc).__name__})"
    broker = _check_broker(gw)
    ok = database == "ok" and broker == "ok"
    body = {"status": "ok" if ok else "degraded", "database": database, "broker": broker,
            "embedded": gw.settings.embedded_broker}
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request, _: Admin):
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(request.app.state.metrics.registry),
                    media_type=CONTENT_TYPE_LATEST)
