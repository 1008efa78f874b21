"""API keys: `rbk_<id>.<secret>`, stored as the sha256 of the secret (the secret has 256 bits
of entropy, so a fast hash is enough), with a tenant and scopes. The gateway checks them; the
`robustness keys` command manages them on the server."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update

from store.db import ApiKeyRecord, Database, new_id, utcnow

SCOPES = ("read", "submit", "admin")
PREFIX = "rbk_"


@dataclass(frozen=True)
class Principal:
    key_id: str | None
    tenant: str
    scopes: frozenset[str]


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_scopes(scopes) -> list[str]:
    scopes = sorted(set(scopes))
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise ValueError(f"scopes: {bad or 'none given'}; each must be one of "
                         f"{', '.join(SCOPES)}")
    return scopes


def check_tenant(tenant: str) -> str:
    if not tenant or len(tenant) > 100 or not all(c.isalnum() or c in "-_." for c in tenant):
        raise ValueError(f"tenant: {tenant!r} must be 1-100 letters, digits, '-', '_' or '.'")
    return tenant


def create_key(db: Database, tenant: str, scopes, name: str | None = None,
               key_id: str | None = None, secret: str | None = None) -> tuple[str, ApiKeyRecord]:
    """Returns (the key to hand out, shown once; its record)."""
    record = ApiKeyRecord(id=key_id or new_id("key"), name=name, tenant=check_tenant(tenant),
                          scopes=check_scopes(scopes), created_at=utcnow())
    secret = secret or secrets.token_urlsafe(32)
    record.secret_sha256 = _digest(secret)
    with db.session.begin() as s:
        s.merge(record)
    return f"{PREFIX}{record.id}.{secret}", record


def authenticate(db: Database, token: str) -> Principal | None:
    if not token.startswith(PREFIX) or "." not in token:
        return None
    key_id, secret = token[len(PREFIX):].split(".", 1)
    with db.session() as s:
        record = s.get(ApiKeyRecord, key_id)
    if record is None or record.revoked_at is not None:
        return None
    if not hmac.compare_digest(record.secret_sha256, _digest(secret)):
        return None
    return Principal(record.id, record.tenant, frozenset(record.scopes))


def list_keys(db: Database, tenant: str | None = None) -> list[ApiKeyRecord]:
    """Every key, or one tenant's."""
    query = select(ApiKeyRecord).order_by(ApiKeyRecord.created_at)
    if tenant is not None:
        query = query.where(ApiKeyRecord.tenant == tenant)
    with db.session() as s:
        return list(s.execute(query).scalars())


def revoke_key(db: Database, key_id: str, tenant: str | None = None) -> bool:
    """Revoke an active key (of `tenant`, when given); False if there is no such key."""
    where = [ApiKeyRecord.id == key_id, ApiKeyRecord.revoked_at.is_(None)]
    if tenant is not None:
        where.append(ApiKeyRecord.tenant == tenant)
    with db.session.begin() as s:
        return s.execute(update(ApiKeyRecord).where(*where)
                         .values(revoked_at=utcnow())).rowcount == 1
