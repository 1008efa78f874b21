"""The audit service over HTTP, for pipelines: `Client` (sync) and `AsyncClient` (async) cover
every route, return the contract's models (`robustness.http_models`, the report schemas),
wait for jobs with backoff (the server's `Retry-After` first), retry what is safe to retry
(reads; submissions, which carry an `Idempotency-Key` so a retry cannot make a second job),
and raise `ApiError` with the problem+json detail.

Each operation is written once, as a generator that yields the requests (and the pauses) it
needs and returns its result; the two clients differ only in how they send and sleep. So the
sync and async clients cannot drift apart.

    from robustness.client import Client
    with Client("http://127.0.0.1:8000", key) as c:
        model = c.upload_model("model.safetensors", {"architecture": "madry_mnist", ...})
        job = c.submit_audit({"model_id": model.id, "dataset": {"name": "mnist", "n": 500}})
        job = c.wait(job, progress=print)
        report = c.report(job.id)          # robustness.evaluation.report_schema.Report
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import httpx

from robustness.evaluation.report_schema import CertificationReport, Report
from robustness.http_models import (
    FINAL_STATES,
    SEGMENTS,
    ApiKeyList,
    Comparison,
    CostEstimate,
    CreatedApiKey,
    Deliveries,
    ExamplePage,
    Health,
    Job,
    JobPage,
    Model,
    ModelPage,
    ProblemDetails,
    Schedule,
    SchedulePage,
    WebhookSecret,
)

RETRIED_STATUSES = {429, 502, 503, 504}


class ApiError(Exception):
    """A 4xx or 5xx answer: `status`, the problem+json `problem` (when the body was one) and
    its `detail`, which names the field to fix."""

    def __init__(self, status: int, detail: str, problem: ProblemDetails | None = None):
        super().__init__(f"HTTP {status}: {detail}")
        self.status, self.detail, self.problem = status, detail, problem


class WaitTimeout(TimeoutError):
    def __init__(self, job: Job, seconds: float):
        super().__init__(f"{job.kind} {job.id} is still {job.status} after {seconds:g} s")
        self.job = job


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    files: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    retry: bool = True  # safe to send again: a read, or a submission with an Idempotency-Key


@dataclass
class Sleep:
    seconds: float


Operation = Generator[Request | Sleep, Any, Any]


def _problem(response: httpx.Response) -> ApiError:
    try:
        problem = ProblemDetails.model_validate(response.json())
        return ApiError(response.status_code, problem.detail, problem)
    except (ValueError, TypeError):
        return ApiError(response.status_code, response.text[:500] or response.reason_phrase)


def _page(limit: int, offset: int, cursor: str | None) -> dict:
    return {"limit": limit, **({"cursor": cursor} if cursor else {"offset": offset})}


def _retry_after(response: httpx.Response | None, default: float) -> float:
    try:
        return max(0.0, float(response.headers["Retry-After"])) if response is not None \
            else default
    except (KeyError, ValueError):
        return default


def operation(fn: Callable[..., Operation]):
    """Turns an operation into a method of both clients: each runs it with its own driver."""

    @functools.wraps(fn)
    def method(self, *args, **kwargs):
        return self._run(fn(self, *args, **kwargs))

    method.operation = fn
    return method


class _Operations:
    retries: int
    backoff: float

    def _call(self, request: Request, parse: Callable[[httpx.Response], Any] | None = None,
              ) -> Operation:
        """Send `request`, again after a pause on a lost connection or a 429/502/503/504 if
        it is safe to; a 2xx is parsed, anything else raised as an ApiError."""
        for attempt in range(self.retries + 1):
            last = attempt == self.retries or not request.retry
            try:
                response = yield request
            except httpx.TransportError:
                if last:
                    raise
                yield Sleep(self.backoff * 2 ** attempt)
                continue
            if response.status_code in RETRIED_STATUSES and not last:
                yield Sleep(_retry_after(response, self.backoff * 2 ** attempt))
                continue
            if response.status_code >= 400:
                raise _problem(response)
            return parse(response) if parse else response
        raise AssertionError("unreachable")

    def _model(self, request: Request, model) -> Operation:
        return (yield from self._call(request, lambda r: model.model_validate(r.json())))

    # Models
    @operation
    def upload_model(self, path: str | Path, metadata: dict) -> Operation:
        """Register a model file (.safetensors, .pt2, TorchScript, .pt state_dict) with its
        metadata (name, architecture, num_classes, input_shape, preprocessing, labels). Not
        retried: a second upload would register a second record."""
        path = Path(path)
        return (yield from self._model(Request(
            "POST", "/v1/models", files={"file": (path.name, path.read_bytes())},
            data={"metadata": json.dumps(metadata)}, retry=False), Model))

    @operation
    def get_model(self, model_id: str) -> Operation:
        return (yield from self._model(Request("GET", f"/v1/models/{model_id}"), Model))

    @operation
    def list_models(self, limit: int = 100, offset: int = 0, cursor: str | None = None
                    ) -> Operation:
        """One page (every list: `items`, `total`, `next_cursor` for the next page)."""
        return (yield from self._model(Request("GET", "/v1/models", params=_page(
            limit, offset, cursor)), ModelPage))

    @operation
    def delete_model(self, model_id: str) -> Operation:
        yield from self._call(Request("DELETE", f"/v1/models/{model_id}"))

    # Jobs
    def _submit(self, kind: str, spec: dict, idempotency_key: str | None,
                dry_run: bool) -> Operation:
        path = f"/v1/{SEGMENTS[kind]}"
        if dry_run:
            return (yield from self._model(Request("POST", path, json=spec,
                                                   params={"dry_run": "true"}), CostEstimate))
        key = idempotency_key or f"client-{uuid.uuid4()}"
        return (yield from self._model(Request("POST", path, json=spec,
                                               headers={"Idempotency-Key": key}), Job))

    @operation
    def submit_audit(self, spec: dict, *, idempotency_key: str | None = None,
                     dry_run: bool = False) -> Operation:
        """The queued job; with `dry_run`, its `CostEstimate` (nothing is queued)."""
        return (yield from self._submit("audit", spec, idempotency_key, dry_run))

    @operation
    def submit_training(self, spec: dict, *, idempotency_key: str | None = None,
                        dry_run: bool = False) -> Operation:
        return (yield from self._submit("training", spec, idempotency_key, dry_run))

    @operation
    def submit_certification(self, spec: dict, *, idempotency_key: str | None = None,
                             dry_run: bool = False) -> Operation:
        return (yield from self._submit("certification", spec, idempotency_key, dry_run))

    @operation
    def get_job(self, kind: str, job_id: str) -> Operation:
        return (yield from self._model(Request("GET", f"/v1/{SEGMENTS[kind]}/{job_id}"), Job))

    @operation
    def list_jobs(self, kind: str, *, status: str | None = None, model_id: str | None = None,
                  schedule_id: str | None = None, limit: int = 100, offset: int = 0,
                  cursor: str | None = None) -> Operation:
        params = {k: v for k, v in {"status": status, "model_id": model_id,
                                    "schedule_id": schedule_id}.items() if v is not None}
        params |= _page(limit, offset, cursor)
        return (yield from self._model(Request("GET", f"/v1/{SEGMENTS[kind]}", params=params),
                                       JobPage))

    @operation
    def cancel(self, job: Job) -> Operation:
        return (yield from self._model(Request(
            "POST", f"/v1/{SEGMENTS[job.kind]}/{job.id}/cancel"), Job))

    @operation
    def delete_job(self, job: Job) -> Operation:
        """Remove an ended job and the stored results no other record uses."""
        yield from self._call(Request("DELETE", f"/v1/{SEGMENTS[job.kind]}/{job.id}"))

    @operation
    def wait(self, job: Job, *, timeout: float | None = None,
             progress: Callable[[Job], None] | None = None, max_interval: float = 30.0
             ) -> Operation:
        """Poll until the job has ended (succeeded, failed or cancelled) and return it. Each
        pause is the server's Retry-After, growing by half each time up to `max_interval`;
        `progress` is called with the job after every poll."""
        path = f"/v1/{SEGMENTS[job.kind]}/{job.id}"
        started, interval = time.monotonic(), 0.0
        while True:
            response = yield from self._call(Request("GET", path))
            job = Job.model_validate(response.json())
            if progress is not None:
                progress(job)
            if job.status in FINAL_STATES:
                return job
            if timeout is not None and time.monotonic() - started > timeout:
                raise WaitTimeout(job, timeout)
            interval = min(max_interval, max(_retry_after(response, 2.0), interval * 1.5))
            yield Sleep(interval)

    @operation
    def deliveries(self, job: Job) -> Operation:
        return (yield from self._model(Request(
            "GET", f"/v1/{SEGMENTS[job.kind]}/{job.id}/deliveries"), Deliveries))

    # Results
    def _report(self, path: str, model, raw: bool) -> Operation:
        if raw:  # the stored JSON as it is, e.g. to archive it
            return (yield from self._call(Request("GET", path), lambda r: r.json()))
        return (yield from self._model(Request("GET", path), model))

    @operation
    def report(self, audit_id: str, *, raw: bool = False) -> Operation:
        """The audit's report (`Report`), or with `raw` the stored JSON as a dict."""
        return (yield from self._report(f"/v1/audits/{audit_id}/report", Report, raw))

    @operation
    def compare(self, audit_id: str, other_id: str, *, tolerance: float = 0.01) -> Operation:
        """Audit `other_id` (B) against `audit_id` (A) on the same examples."""
        return (yield from self._model(Request(
            "GET", f"/v1/audits/{audit_id}/compare/{other_id}",
            params={"tolerance": tolerance}), Comparison))

    @operation
    def compare_html(self, audit_id: str, other_id: str, *, tolerance: float = 0.01
                     ) -> Operation:
        """The comparison as one HTML page: both audits on the same axes, with the flips."""
        return (yield from self._call(Request(
            "GET", f"/v1/audits/{audit_id}/compare/{other_id}.html",
            params={"tolerance": tolerance}), lambda r: r.text))

    @operation
    def report_html(self, audit_id: str, *, epsilon: float | None = None,
                    gallery_offset: int = 0, gallery_size: int | None = None) -> Operation:
        """The report page; `epsilon` picks the per-class plots' ε, the gallery shows
        `gallery_size` examples from `gallery_offset` (most confidently wrong first)."""
        params = {k: v for k, v in {"epsilon": epsilon, "gallery_offset": gallery_offset,
                                    "gallery_size": gallery_size}.items() if v is not None}
        return (yield from self._call(Request("GET", f"/v1/audits/{audit_id}/report.html",
                                              params=params), lambda r: r.text))

    @operation
    def training_report_html(self, training_id: str) -> Operation:
        """The training's page: its history plotted (while it runs too)."""
        return (yield from self._call(Request(
            "GET", f"/v1/trainings/{training_id}/report.html"), lambda r: r.text))

    @operation
    def examples(self, audit_id: str, **filters) -> Operation:
        """One page of per-example records: attack, epsilon, misclassified, min_confidence,
        breaking, order ("report" or "confidence"), limit, cursor (the previous page's
        next_cursor)."""
        params = {k: v for k, v in filters.items() if v is not None}
        return (yield from self._model(Request("GET", f"/v1/audits/{audit_id}/examples",
                                               params=params), ExamplePage))

    @operation
    def adversarial(self, audit_id: str, attack: str, epsilon: float,
                    format: str = "safetensors") -> Operation:
        """The adversarial examples of one (attack, ε), as file bytes (safetensors or npz)."""
        return (yield from self._call(Request(
            "GET", f"/v1/audits/{audit_id}/adversarial",
            params={"attack": attack, "epsilon": epsilon, "format": format}),
            lambda r: r.content))

    @operation
    def certification_report(self, certification_id: str, *, raw: bool = False) -> Operation:
        return (yield from self._report(f"/v1/certifications/{certification_id}/report",
                                        CertificationReport, raw))

    @operation
    def certification_report_html(self, certification_id: str) -> Operation:
        return (yield from self._call(Request(
            "GET", f"/v1/certifications/{certification_id}/report.html"), lambda r: r.text))

    # Schedules
    @operation
    def create_schedule(self, cron: str, audit: dict, *, callback_url: str | None = None
                        ) -> Operation:
        body = {"cron": cron, "audit": audit} | ({"callback_url": callback_url}
                                                 if callback_url else {})
        return (yield from self._model(Request("POST", "/v1/schedules", json=body,
                                               retry=False), Schedule))

    @operation
    def get_schedule(self, schedule_id: str) -> Operation:
        return (yield from self._model(Request("GET", f"/v1/schedules/{schedule_id}"),
                                       Schedule))

    @operation
    def list_schedules(self, limit: int = 100, offset: int = 0, cursor: str | None = None
                       ) -> Operation:
        return (yield from self._model(Request("GET", "/v1/schedules", params=_page(
            limit, offset, cursor)), SchedulePage))

    @operation
    def delete_schedule(self, schedule_id: str) -> Operation:
        yield from self._call(Request("DELETE", f"/v1/schedules/{schedule_id}"))

    # Keys, secrets, health
    @operation
    def create_key(self, tenant: str, scopes: list[str], *, name: str | None = None
                   ) -> Operation:
        body = {"tenant": tenant, "scopes": scopes} | ({"name": name} if name else {})
        return (yield from self._model(Request("POST", "/v1/keys", json=body, retry=False),
                                       CreatedApiKey))

    @operation
    def list_keys(self, limit: int = 100, offset: int = 0, cursor: str | None = None
                  ) -> Operation:
        return (yield from self._model(Request("GET", "/v1/keys", params=_page(
            limit, offset, cursor)), ApiKeyList))

    @operation
    def revoke_key(self, key_id: str) -> Operation:
        yield from self._call(Request("DELETE", f"/v1/keys/{key_id}"))

    @operation
    def webhook_secret(self) -> Operation:
        return (yield from self._model(Request("GET", "/v1/webhooks/secret"), WebhookSecret))

    @operation
    def health(self) -> Operation:
        return (yield from self._model(Request("GET", "/v1/health"), Health))

    @operation
    def metrics(self) -> Operation:
        """The Prometheus text (the operator's admin key)."""
        return (yield from self._call(Request("GET", "/metrics"), lambda r: r.text))


@dataclass
class Done:
    value: Any


def _advance(op: Operation, reply, error: BaseException | None) -> Request | Sleep | Done:
    """The operation's next step, given the answer to its last one (or the error sending it
    raised, which the operation may catch and retry)."""
    try:
        return op.throw(error) if error is not None else op.send(reply)
    except StopIteration as stop:
        return Done(stop.value)


def _http_kwargs(request: Request) -> dict:
    return {"params": request.params, "json": request.json, "files": request.files,
            "data": request.data, "headers": request.headers}


class Client(_Operations):
    """The service, synchronously. `key` is an API key (`Authorization: Bearer`)."""

    def __init__(self, url: str, key: str | None = None, *, timeout: float = 60.0,
                 retries: int = 4, backoff: float = 0.5,
                 transport: httpx.BaseTransport | None = None):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=url, headers=headers, timeout=timeout,
                                 transport=transport)
        self.retries, self.backoff = retries, backoff

    def _run(self, op: Operation):
        outcome: tuple = (None, None)
        while not isinstance(step := _advance(op, *outcome), Done):
            if isinstance(step, Sleep):
                time.sleep(step.seconds)
                outcome = (None, None)
                continue
            try:
                outcome = (self.http.request(step.method, step.path, **_http_kwargs(step)),
                           None)
            except httpx.TransportError as exc:
                outcome = (None, exc)
        return step.value

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncClient(_Operations):
    """The service, asynchronously: the same methods as `Client`, each a coroutine."""

    def __init__(self, url: str, key: str | None = None, *, timeout: float = 60.0,
                 retries: int = 4, backoff: float = 0.5,
                 transport: httpx.AsyncBaseTransport | None = None):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout,
                                      transport=transport)
        self.retries, self.backoff = retries, backoff

    async def _run(self, op: Operation):
        outcome: tuple = (None, None)
        while not isinstance(step := _advance(op, *outcome), Done):
            if isinstance(step, Sleep):
                await asyncio.sleep(step.seconds)
                outcome = (None, None)
                continue
            try:
                outcome = (await self.http.request(step.method, step.path,
                                                   **_http_kwargs(step)), None)
            except httpx.TransportError as exc:
                outcome = (None, exc)
        return step.value

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()
