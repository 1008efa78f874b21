"""/v1/keys (admin scope): API keys with a tenant and scopes. The key itself is returned once,
at creation; only a hash of it is stored.

Who manages whose keys: the operator (an admin key of the default tenant, the configured or
generated admin key among them) every tenant's; an admin key of any other tenant only its own
tenant's, so a team can mint keys for its pipelines without reaching another team's. Another
tenant's key is a 404 to a tenant admin, as another tenant's model is to a reader.
"""

from __future__ import annotations

from fastapi import Response
from pydantic import Field

from robustness.http_models import ApiKeyList, CreatedApiKey
from robustness.spec import Strict
from service.auth import Admin, is_operator
from service.gateway import GatewayDep
from service.keys import SCOPES, check_scopes, check_tenant, create_key, list_keys, revoke_key
from service.problems import Problem
from service.routes import resource
from service.routes.listing import PagingDep
from service.views import iso

router = resource("/keys", "keys")


class KeySpec(Strict):
    tenant: str = Field(max_length=100, description="whose models and jobs the key sees")
    scopes: list[str] = Field(min_length=1, max_length=8, description=f"of {', '.join(SCOPES)}")
    name: str | None = Field(default=None, max_length=200)


def view(r) -> dict:
    return {"id": r.id, "name": r.name, "tenant": r.tenant, "scopes": r.scopes,
            "created_at": iso(r.created_at), "revoked_at": iso(r.revoked_at)}


@router.post("", status_code=201, summary="Create an API key (shown once)",
             response_model=CreatedApiKey)
def create_api_key(spec: KeySpec, gw: GatewayDep, who: Admin) -> dict:
    try:
        check_tenant(spec.tenant)
        check_scopes(spec.scopes)
    except ValueError as exc:
        raise Problem(422, str(exc)) from None
    if spec.tenant != who.tenant and not is_operator(who):
        raise Problem(403, f"tenant: an admin key of tenant '{who.tenant}' creates keys for "
                           f"'{who.tenant}' only (the operator's admin keys manage every "
                           f"tenant)")
    token, record = create_key(gw.db, spec.tenant, spec.scopes, spec.name)
    return {**view(record), "key": token}


@router.get("", summary="List API keys (without secrets)", response_model=ApiKeyList)
def list_api_keys(gw: GatewayDep, who: Admin, paging: PagingDep):
    keys = list_keys(gw.db, None if is_operator(who) else who.tenant)
    return paging.answer([view(r) for r in keys[paging.offset:paging.offset + paging.limit]],
                         len(keys))


@router.delete("/{key_id}", status_code=204, summary="Revoke an API key")
def revoke_api_key(gw: GatewayDep, who: Admin, key_id: str):
    if not revoke_key(gw.db, key_id, None if is_operator(who) else who.tenant):
        raise Problem(404, f"no active key {key_id!r}")
    return Response(status_code=204)
