"""Standard Webhooks signatures on callbacks (https://www.standardwebhooks.com): every
delivery carries `webhook-id`, `webhook-timestamp` and `webhook-signature` (HMAC-SHA256 over
`id.timestamp.body`, by the `standardwebhooks` package), so a receiver can tell a callback
from this service from a forged one, and a replay from a fresh one.

Secrets are per tenant: with one deployment-wide secret any tenant's admin could sign
messages another tenant's receiver would accept. `ROBUSTNESS_WEBHOOK_SECRET` is the default
tenant's; every other tenant's (and the default one's when unset) is generated on first use and
kept in the database, so every gateway signs with the same one.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from standardwebhooks.webhooks import Webhook

from store.db import DEFAULT_TENANT, Database, WebhookSecretRecord, utcnow

PREFIX = "whsec_"


def check_secret(secret: str) -> str:
    """A `whsec_` secret of at least 24 random bytes, or a clear error at start-up."""
    body = secret.removeprefix(PREFIX)
    try:
        raw = base64.b64decode(body + "==", validate=False)
    except (binascii.Error, ValueError):
        raw = b""
    if not secret.startswith(PREFIX) or len(raw) < 24:
        raise ValueError("ROBUSTNESS_WEBHOOK_SECRET: expected whsec_ followed by the base64 of "
                         "at least 24 random bytes (e.g. whsec_$(head -c 32 /dev/urandom | "
                         "base64))")
    return secret


def generate_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def tenant_secret(db: Database, tenant: str, configured: str | None = None) -> str:
    """The tenant's signing secret: the configured one for the default tenant, else the
    stored one, made now if there is none (the first gateway to store it wins)."""
    if tenant == DEFAULT_TENANT and configured:
        return check_secret(configured)
    with db.session() as s:
        record = s.get(WebhookSecretRecord, tenant)
    if record is None:
        try:
            with db.session.begin() as s:
                s.add(WebhookSecretRecord(tenant=tenant, secret=generate_secret(),
                                          created_at=utcnow()))
        except IntegrityError:
            pass
        with db.session() as s:
            record = s.get(WebhookSecretRecord, tenant)
    return record.secret


def signature_headers(secret: str, message_id: str, body: str, when: datetime) -> dict[str, str]:
    return {"webhook-id": message_id, "webhook-timestamp": str(int(when.timestamp())),
            "webhook-signature": Webhook(secret).sign(message_id, when, body)}
