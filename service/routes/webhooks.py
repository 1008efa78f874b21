"""/v1/webhooks/secret (admin scope): the tenant's callback signing secret, for its receivers
to verify deliveries with (`standardwebhooks.Webhook(secret).verify(body, headers)`)."""

from __future__ import annotations

from robustness.http_models import WebhookSecret
from service.auth import Admin
from service.gateway import GatewayDep
from service.routes import resource
from service.webhooks import tenant_secret
from store.db import DEFAULT_TENANT

router = resource("/webhooks", "webhooks")


@router.get("/secret", summary="The secret this tenant's callbacks are signed with",
            response_model=WebhookSecret)
def get_webhook_secret(gw: GatewayDep, who: Admin) -> dict:
    configured = gw.settings.webhook_secret
    source = "environment" if configured and who.tenant == DEFAULT_TENANT else "generated"
    return {"secret": tenant_secret(gw.db, who.tenant, configured), "tenant": who.tenant,
            "source": source}
