"""Who is calling: `Authorization: Bearer <key>` resolved to a tenant and scopes.

`ROBUSTNESS_ADMIN_KEY` is an admin key of the default tenant; without it the gateway creates
one on first start, keeps it in `ROBUSTNESS_HOME/admin.key` (mode 0600) and `robustness serve`
prints it that once. A key from the environment, or one already in the file, is shown only as
a fingerprint, so it never reaches a container's logs. Anonymous calls are refused unless `ROBUSTNESS_ALLOW_ANONYMOUS=1`, and even then
only from the loopback interface (local development), with read and submit scopes.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.keys import SCOPES, Principal, authenticate, create_key
from service.problems import Problem
from service.settings import GatewaySettings
from store.db import DEFAULT_TENANT, Database

ADMIN = Principal(None, DEFAULT_TENANT, frozenset(SCOPES))
LOOPBACK = {"127.0.0.1", "::1", "localhost", "testclient"}


def admin_key_file(settings: GatewaySettings) -> Path:
    return settings.home / "admin.key"


def ensure_admin_key(settings: GatewaySettings, db: Database) -> tuple[str, bool]:
    """The admin key (the configured one, else the one generated on first start) and whether
    it was generated just now: the only time it may be printed."""
    if settings.admin_key:
        return settings.admin_key, False
    path = admin_key_file(settings)
    if path.is_file():
        return path.read_text().strip(), False
    token, _ = create_key(db, DEFAULT_TENANT, SCOPES, name="admin (generated)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token, True


def fingerprint(token: str) -> str:
    """What logs may show of a key: enough to tell two keys apart, nothing to use one."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:12]


def _unauthorized(detail: str) -> Problem:
    return Problem(401, detail, headers={"WWW-Authenticate": "Bearer"})


# Declares Bearer auth in the OpenAPI document (the Authorize button of /docs); the header is
# read below, so that each way of getting it wrong has its own message.
BEARER = HTTPBearer(auto_error=False, description="an API key: `robustness serve` prints the "
                    "admin key; POST /v1/keys or `robustness keys create` makes more")


def principal(request: Request,
              _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)] = None
              ) -> Principal:
    """The caller, resolved once per request (a JSON route checks it before reading its
    body, then its dependencies ask again)."""
    known = getattr(request.state, "principal", None)
    if known is None:
        known = request.state.principal = _resolve(request)
    return known


def _resolve(request: Request) -> Principal:
    gw = request.app.state.gw
    header = request.headers.get("authorization", "")
    if not header:
        host = request.client.host if request.client else ""
        if gw.settings.allow_anonymous and host in LOOPBACK:
            return Principal(None, DEFAULT_TENANT, frozenset({"read", "submit"}))
        raise _unauthorized("Authorization: send 'Bearer <API key>' (robustness serve prints "
                            "the admin key; `robustness keys create` makes more)")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("Authorization: expected 'Bearer <API key>'")
    admin = gw.settings.admin_key
    if admin and hmac.compare_digest(token.encode(), admin.encode()):
        return ADMIN
    found = authenticate(gw.db, token)
    if found is None:
        raise _unauthorized("Authorization: unknown or revoked API key")
    return found


def authorize(request: Request, scope: str) -> Principal:
    who = principal(request)
    if scope not in who.scopes:
        raise Problem(403, f"this API key lacks the '{scope}' scope (it has "
                           f"{', '.join(sorted(who.scopes))})")
    return who


def require(scope: str):
    def check(request: Request,
              _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]
              ) -> Principal:
        return authorize(request, scope)
    check.scope = scope  # read by service.request_body, which checks it before the body
    return check


def is_operator(who: Principal) -> bool:
    """The operator: an admin key of the default tenant (`ROBUSTNESS_ADMIN_KEY` among them).
    It manages every tenant's keys; another tenant's admin key manages its own tenant's."""
    return "admin" in who.scopes and who.tenant == DEFAULT_TENANT


def operator(who: Annotated[Principal, Depends(require("admin"))]) -> Principal:
    if not is_operator(who):
        raise Problem(403, f"only the operator's admin keys (tenant '{DEFAULT_TENANT}') may "
                           f"do this; this key is an admin of tenant '{who.tenant}' alone")
    return who


Reader = Annotated[Principal, Depends(require("read"))]
Submitter = Annotated[Principal, Depends(require("submit"))]
Admin = Annotated[Principal, Depends(require("admin"))]
Operator = Annotated[Principal, Depends(operator)]
