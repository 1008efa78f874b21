"""/v1/keys (admin scope): API keys with a tenant and scopes. The key itself is returned once,
at creation; only a hash of it is stored."""

from __future__ import annotations

from fastapi import Response
from pydantic import Field

from robustness.spec import Strict
from service.auth import Admin
from service.gateway import GatewayDep
from service.keys import SCOPES, check_scopes, check_tenant, create_key, list_keys, revoke_key
from service.problems import Problem
from service.routes import resource
from service.schemas import ApiKeyList, CreatedApiKey
from service.views import iso

router = resource("/keys", "keys")


class KeySpec(Strict):
    tenant: str = Field(max_length=100, description="whose models and jobs the key sees")
    scopes: list[str] = Field(min_length=1, description=f"of {', '.join(SCOPES)}")
    name: str | None = Field(default=None, max_length=200)


def view(r) -> dict:
    return {"id": r.id, "name": r.name, "tenant": r.tenant, "scopes": r.scopes,
            "created_at": iso(r.created_at), "revoked_at": iso(r.revoked_at)}


@router.post("", status_code=201, summary="Create an API key (shown once)",
             response_model=CreatedApiKey)
def create_api_key(spec: KeySpec, gw: GatewayDep, _: Admin) -> dict:
    try:
        check_tenant(spec.tenant)
        check_scopes(spec.scopes)
    except ValueError as exc:
        raise Problem(422, str(exc)) from None
    token, record = create_key(gw.db, spec.tenant, spec.scopes, spec.name)
    return {**view(record), "key": token}


@router.get("", summary="List API keys (without secrets)", response_model=ApiKeyList)
def list_api_keys(gw: GatewayDep, _: Admin):
    return {"items": [view(r) for r in list_keys(gw.db)]}


@router.delete("/{key_id}", status_code=204, summary="Revoke an API key")
def revoke_api_key(gw: GatewayDep, _: Admin, key_id: str):
    if not revoke_key(gw.db, key_id):
        raise Problem(404, f"no active key {key_id!r}")
    return Response(status_code=204)
