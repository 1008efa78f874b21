"""/v1/keys (admin scope): API keys with a tenant and scopes. The key itself is returned once,
at creation; only a hash of it is stored."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field

from robustness.spec import Strict, parse_spec
from service.auth import Admin
from service.problems import Problem
from service.routes.body import read_json
from service.state import GatewayDep
from service.views import iso
from workers.keys import SCOPES, check_scopes, check_tenant, create_key, list_keys, revoke_key

router = APIRouter(prefix="/v1/keys", tags=["keys"])


class KeySpec(Strict):
    tenant: str = Field(max_length=100, description="whose models and jobs the key sees")
    scopes: list[str] = Field(min_length=1, description=f"of {', '.join(SCOPES)}")
    name: str | None = Field(default=None, max_length=200)


def view(r) -> dict:
    return {"id": r.id, "name": r.name, "tenant": r.tenant, "scopes": r.scopes,
            "created_at": iso(r.created_at), "revoked_at": iso(r.revoked_at)}


@router.post("", status_code=201, summary="Create an API key (shown once)")
async def create(gw: GatewayDep, _: Admin, request: Request):
    spec = parse_spec(KeySpec, await read_json(request))
    try:
        check_tenant(spec.tenant)
        check_scopes(spec.scopes)
    except ValueError as exc:
        raise Problem(422, str(exc)) from None
    token, record = create_key(gw.db, spec.tenant, spec.scopes, spec.name)
    return JSONResponse({**view(record), "key": token}, status_code=201)


@router.get("", summary="List API keys (without secrets)")
def list_all(gw: GatewayDep, _: Admin):
    return {"items": [view(r) for r in list_keys(gw.db)]}


@router.delete("/{key_id}", status_code=204, summary="Revoke an API key")
def revoke(gw: GatewayDep, _: Admin, key_id: str):
    if not revoke_key(gw.db, key_id):
        raise Problem(404, f"no active key {key_id!r}")
    return Response(status_code=204)
