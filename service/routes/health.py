"""/v1/health: the gateway, its database and its broker reachable (no key needed)."""

from __future__ import annotations

from fastapi.responses import JSONResponse
from sqlalchemy import text

from robustness.http_models import Health
from service.gateway import Gateway, GatewayDep
from service.routes import resource

router = resource("", "health")


def _check_broker(gw: Gateway) -> str:
    try:
        with gw.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return "ok"
    except Exception as exc:  # noqa: BLE001 - health reports, never raises
        return f"unreachable ({type(exc).__name__})"


@router.get("/health", summary="Liveness of the gateway, its database and its broker",
            response_model=Health,
            responses={503: {"model": Health, "description": "database or broker unreachable"}})
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
