"""The gateway's own settings (keys, limits on what it accepts, housekeeping), on top of what
it shares with the workers (`store.settings`). Read once from the environment."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from store.settings import Settings


class GatewaySettings(Settings):
    admin_key: str | None = Field(default=None, description="an admin API key of the default "
                                  "tenant; default: generated once, kept in home/admin.key")
    allow_anonymous: bool = Field(default=False, description="local development only: "
                                  "unauthenticated calls from loopback get read and submit")

    # Limits on what is accepted, checked before anything is stored or queued.
    max_upload_bytes: int = Field(default=512 * 1024 * 1024, description="largest model "
                                  "file; an upload is counted as it streams")
    max_json_bytes: int = Field(default=1024 * 1024, description="largest JSON body (a spec); "
                                "larger ones are refused before they are parsed")
    max_job_passes: int = Field(default=10**10, description="refuse jobs needing more example "
                                "forward+backward passes than this (n × steps × restarts × ε "
                                "for audits, n × epochs × steps for trainings)")
    callback_hosts: str | None = Field(default=None, description="comma-separated hosts that "
                                       "callbacks may call, internal ones included; "
                                       "unset: public addresses only")
    callback_ports: str = Field(default="80,443,8080,8443", description="ports callbacks to "
                                "public addresses may use")
    callback_seconds: float = Field(default=10.0, gt=0, description="overall deadline of one "
                                    "callback delivery: connect, send and the answer's "
                                    "status line")
    callback_attempts: int = Field(default=8, ge=1, le=50, description="delivery attempts "
                                   "before a callback is given up as failed")
    callback_backoff_seconds: float = Field(default=5.0, ge=0, description="wait after the "
                                            "first failed attempt; each further wait doubles "
                                            "(8 attempts: about 10 minutes in all)")
    webhook_secret: str | None = Field(default=None, description="the default tenant's "
                                       "Standard Webhooks signing secret (whsec_ + base64); "
                                       "default: generated once per tenant, kept in the "
                                       "database, shown to admins at /v1/webhooks/secret")

    retention_days: float | None = Field(default=None, gt=0, description="expire the "
                                         "adversarial sets of jobs finished longer ago than "
                                         "this (their reports stay); unset: keep them")

    # Per-tenant quotas (service.quotas).
    max_models_per_tenant: int = Field(default=1000, ge=0)
    max_schedules_per_tenant: int = Field(default=100, ge=0)
    max_unfinished_jobs_per_tenant: int = Field(default=200, ge=0, description="queued or "
                                                "running jobs a tenant may have at once")
    min_schedule_minutes: float = Field(default=5.0, ge=0, description="shortest interval "
                                        "between two firings of a schedule")

    # Housekeeping: how often lost jobs are looked for, and how often a job may lose its
    # worker before it fails.
    reconcile_seconds: float = 10.0
    max_attempts: int = Field(default=3, description="a job whose worker died this many "
                              "times fails instead of being delivered again")


@lru_cache(maxsize=1)
def get_gateway_settings() -> GatewaySettings:
    return GatewaySettings()
