"""The HTTP contract's response bodies, as pydantic models: what `openapi.json` promises,
what every route is declared to return (`response_model`), and what `robustness.client`
parses answers into, so clients are typed.

Open-ended records (a spec, a job's summary, a model's metadata and card) stay JSON objects:
their own schemas are the request models (`AuditSpec`, `TrainingSpec`, `ModelMetadata`).
Routes return only the keys a record has (`response_model_exclude_unset`), so an audit never
shows a training's `history` and the JSON is what it was before these models existed.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# store.db takes the states from here and tests/test_layout.py checks the kinds against
# store/kinds.py, so
# the client (`robustness.client`) needs nothing of the service to read its answers.
JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL_STATES = ("succeeded", "failed", "cancelled")
JOB_KINDS = ("audit", "training", "certification")
SEGMENTS = {"audit": "audits", "training": "trainings", "certification": "certifications"}
KIND_OF_PREFIX = {"aud": "audit", "trn": "training", "crt": "certification"}  # aud_…

JobStatus = Literal[JOB_STATES]  # type: ignore[valid-type]
JobKindName = Literal[JOB_KINDS]  # type: ignore[valid-type]


class Body(BaseModel):
    # A record may gain keys before its model here does; they are passed on, never dropped.
    model_config = ConfigDict(extra="allow")


class FieldError(Body):
    field: str
    message: str


class ProblemDetails(Body):
    """RFC 9457 problem details (`application/problem+json`)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str = Field(description="what went wrong, naming the field to fix")
    errors: list[FieldError] | None = Field(default=None,
                                            description="one entry per invalid field")


class Progress(Body):
    completed: int
    total: int
    fraction: float
    phase: str | None = None


class Callback(Body):
    url: str
    status: Literal["delivered", "failed", "blocked"] | None = Field(
        default=None, description="none yet (pending or retrying), delivered (a 2xx), failed "
        "(no 2xx after ROBUSTNESS_CALLBACK_ATTEMPTS attempts) or blocked (the URL is not one "
        "callbacks may reach); each attempt is at …/{id}/deliveries")
    attempts: int
    next_attempt_at: str | None = Field(default=None, description="while retrying: when the "
                                        "next attempt is due (exponential backoff)")


class Delivery(Body):
    attempt: int
    message_id: str = Field(description="the webhook-id header: the same on every attempt")
    started_at: str
    seconds: float
    outcome: Literal["delivered", "failed", "blocked", "retrying"]
    detail: str = Field(description="the receiver's HTTP status, or the kind of failure")




class WebhookSecret(Body):
    secret: str = Field(description="whsec_…: verify deliveries with it (Standard Webhooks)")
    tenant: str
    source: Literal["environment", "generated"]


class Job(Body):
    """An audit or a training: its status, progress and outcome."""

    id: str
    kind: JobKindName
    status: JobStatus
    progress: Progress
    error: str | None = None
    cancel_requested: bool
    attempts: int
    spec: dict[str, Any]
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    seconds: float | None = None
    summary: dict[str, Any] | None = None
    links: dict[str, str]
    model_id: str | None = Field(default=None, description="audits: the model audited; "
                                 "trainings: the model registered on success")
    schedule_id: str | None = Field(default=None, description="audits: the schedule that "
                                    "fired it")
    callback: Callback | None = None
    request_id: str | None = Field(default=None, description="the X-Request-ID it was "
                                   "submitted under, in its worker's logs and its callback")
    history: list[dict[str, Any]] | None = Field(default=None, description="trainings: one "
                                                 "entry per epoch")


class CostEstimate(Body):
    """A dry run's answer (`POST /v1/<jobs>?dry_run=true`): nothing was stored or queued."""

    kind: JobKindName
    passes: int | None = Field(description="example forward+backward passes the job needs "
                               "(None: unknown until its data is loaded)")
    limit: int = Field(description="the most one job may need (ROBUSTNESS_MAX_JOB_PASSES)")
    budget_left: int | None = Field(description="limit - passes")
    passes_per_second: float | None = Field(description="this deployment's measured "
                                            "throughput for the kind (None: none ran yet)")
    measured_jobs: int = Field(description="the recent succeeded jobs it was measured on")
    estimated_seconds: float | None = Field(description="passes / passes_per_second: run "
                                            "time, not counting the wait in the queue")


class Page(Body):
    """Every list's shape: `limit` items from `offset` (query `limit` and `offset`, or
    `cursor`), the `total` matched, and `next_cursor` for the next page (null: the last)."""

    total: int
    limit: int
    offset: int
    next_cursor: str | None = None


class Deliveries(Page):
    callback_url: str | None
    status: Literal["delivered", "failed", "blocked"] | None = None
    items: list[Delivery]


class JobPage(Page):
    items: list[Job]


class Model(Body):
    id: str
    name: str | None = None
    sha256: str
    size: int
    format: str
    metadata: dict[str, Any]
    source_training_id: str | None = None
    created_at: str | None = None
    links: dict[str, str]
    card: dict[str, Any] | None = Field(default=None, description="trained here: the model "
                                        "card (training spec, per-epoch history)")


class ModelPage(Page):
    items: list[Model]


class Schedule(Body):
    id: str
    cron: str
    audit: dict[str, Any]
    callback_url: str | None = None
    tolerance: float | None = None
    next_run_at: str | None = None
    last_run_at: str | None = None
    last_audit_id: str | None = None
    created_at: str | None = None
    links: dict[str, str]


class SchedulePage(Page):
    items: list[Schedule]


class ApiKey(Body):
    id: str
    name: str | None = None
    tenant: str
    scopes: list[str]
    created_at: str | None = None
    revoked_at: str | None = None


class CreatedApiKey(ApiKey):
    key: str = Field(description="the key itself, shown only in this response")


class ApiKeyList(Page):
    items: list[ApiKey]


class Health(Body):
    status: Literal["ok", "degraded"]
    database: str
    broker: str
    embedded: bool


class ExampleRecord(Body):
    """One example under one (attack, ε)."""

    attack: str = Field(description="the attack's label in the report")
    norm: str | None = None
    epsilon: float
    index: int
    label: int = Field(description="the example's true class")
    pred: int
    confidence: float
    true_class_prob: float
    misclassified: bool
    linf: float
    l2: float
    clean_pred: int
    clean_confidence: float
    topk: list[int] = Field(description="the top classes under attack, most probable first")
    topk_confidence: list[float]
    clean_topk: list[int] = Field(description="the top classes on the clean input")
    clean_topk_confidence: list[float]


class ExamplePage(Page):
    items: list[ExampleRecord]


class ComparisonRow(Body):
    attack: str
    norm: str
    epsilon: float
    a: float = Field(description="accuracy in audit A (the baseline)")
    b: float = Field(description="accuracy in audit B")
    delta: float = Field(description="b - a")
    silent_error_rate_delta: dict[str, float]
    broken_in_b: list[int] = Field(description="indices robust in A and broken in B")
    fixed_in_b: list[int] = Field(description="indices broken in A and robust in B")


class Comparison(Body):
    """Audit B against audit A on the same examples (`robustness.evaluation.compare`)."""

    a: str
    b: str
    verdict: Literal["regressed", "unchanged", "improved"]
    tolerance: float
    regressions: list[dict[str, Any]] = Field(description="{attack, epsilon, delta} of each "
                                              "accuracy that fell by more than the tolerance")
    clean: dict[str, float]
    results: list[ComparisonRow]
    only_in_a: list[dict[str, Any]]
    only_in_b: list[dict[str, Any]]
    examples: int
