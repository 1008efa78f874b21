"""`robustness.client` and `robustness remote` against a real `robustness serve` (gateway, child
worker): typed results, waiting, idempotent submissions, problem details as exceptions,
retries, and the remote command's exit codes for CI."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest
import torch
from service_processes import ADMIN_KEY, METADATA, Service

from robustness.client import ApiError, AsyncClient, Client
from robustness.evaluation.report_schema import CertificationReport, Report
from robustness.http_models import CostEstimate, ExamplePage, Job, Model
from robustness.models import save_state_dict

AUDIT = {"dataset": {"name": "digits", "n": 40}, "attacks": [{"name": "fgsm"}],
         "epsilons": [0.0, 0.1], "seed": 0}


def gate(op: str, value: float) -> list[dict]:
    return [{"metric": "accuracy", "attack": "fgsm", "epsilon": 0.1, "op": op, "value": value}]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    svc = Service(tmp_path_factory.mktemp("client-service"),
                  {"ROBUSTNESS_CALLBACK_HOSTS": "127.0.0.1"}, split=False)
    try:
        svc.start()
        yield svc
    finally:
        svc.stop()


@pytest.fixture(scope="module")
def model_file(digits_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    save_state_dict(digits_model.net, folder / "digits.safetensors")
    (folder / "digits.json").write_text(json.dumps(METADATA))  # the sidecar remote reads
    return folder / "digits.safetensors"


def test_a_pipeline_through_the_sync_client(service, model_file):
    with Client(service.url, ADMIN_KEY) as c:
        model = c.upload_model(model_file, METADATA)
        assert isinstance(model, Model) and model.metadata["architecture"] == "madry_mnist"
        spec = {"model_id": model.id, **AUDIT, "gate": gate(">=", 0.2)}
        cost = c.submit_audit(spec, dry_run=True)  # the cost, nothing queued
        # FGSM: one pass at each of the 2 ε, and the clean pass
        assert isinstance(cost, CostEstimate) and cost.passes == 40 * (2 + 1)
        job = c.submit_audit(spec, idempotency_key="pipeline-1")
        assert isinstance(job, Job) and job.kind == "audit" and job.status == "queued"
        # A retry with the same key is the same job; the same key for another spec is refused.
        assert c.submit_audit(spec, idempotency_key="pipeline-1").id == job.id
        with pytest.raises(ApiError, match="Idempotency-Key") as refused:
            c.submit_audit({**spec, "seed": 1}, idempotency_key="pipeline-1")
        assert refused.value.status == 422
        seen: list[str] = []
        done = c.wait(job, progress=lambda j: seen.append(j.status), timeout=120)
        assert done.status == "succeeded" and seen[-1] == "succeeded"
        report = c.report(job.id)
        assert isinstance(report, Report) and report.gate.passed
        fgsm = next(r for r in report.results if r.epsilon == 0.1)
        assert 0.2 <= fgsm.accuracy < report.clean.accuracy
        assert done.summary["clean_accuracy"] == report.clean.accuracy
        page = c.examples(job.id, attack="fgsm", epsilon=0.1, misclassified=True, limit=5)
        assert isinstance(page, ExamplePage) and all(e.misclassified for e in page.items)
        assert page.total == round(40 * (1 - fgsm.accuracy))
        assert "data:image/svg+xml" in c.report_html(job.id, gallery_size=3)
        assert "UNCHANGED" in c.compare_html(job.id, job.id)
        assert [j.id for j in c.list_jobs("audit", model_id=model.id).items] == [job.id]
        # Pages: the next_cursor of one is where the next starts.
        newer = c.upload_model(model_file, METADATA)
        first = c.list_models(limit=1)
        assert first.total == 2 and first.items[0].id == newer.id and first.next_cursor
        second = c.list_models(limit=1, cursor=first.next_cursor)
        assert second.offset == 1 and second.items[0].id == model.id
        # A refusal carries the problem details: status, detail and the field to fix.
        with pytest.raises(ApiError) as bad:
            c.submit_audit({"model_id": model.id, **AUDIT, "epsilons": [-1]})
        assert bad.value.status == 422 and "epsilons" in bad.value.detail
        assert bad.value.problem.errors[0].field.startswith("epsilons")


def test_the_async_client_runs_the_same_operations(service, model_file):
    async def pipeline():
        async with AsyncClient(service.url, ADMIN_KEY) as c:
            model = await c.upload_model(model_file, METADATA)
            job = await c.submit_certification({
                "model_id": model.id, "dataset": {"name": "digits", "n": 8}, "sigma": 0.25,
                "n0": 20, "n": 400, "radii": [0, 0.25], "attack": None})
            done = await c.wait(job, timeout=120)
            return done, await c.certification_report(job.id)

    done, report = asyncio.run(pipeline())
    assert done.kind == "certification" and done.status == "succeeded"
    assert isinstance(report, CertificationReport)
    assert [r.radius for r in report.certified_accuracy] == [0, 0.25]
    assert done.summary["certified_accuracy"][0]["accuracy"] == \
        report.certified_accuracy[0].accuracy


class Flaky:
    """A real HTTP server that answers 503 (Retry-After: 0) `failures` times, then 200."""

    def __init__(self, failures: int):
        self.requests: list[str] = []
        left = [failures]
        seen = self.requests

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                seen.append(f"{self.command} {self.path}")
                if self.command == "POST":
                    self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if left[0] > 0:
                    left[0] -= 1
                    self.send_response(503)
                    self.send_header("Retry-After", "0")
                    body = b'{"title": "Service Unavailable", "status": 503, "detail": "busy"}'
                else:
                    self.send_response(200)
                    body = json.dumps({"status": "ok", "database": "ok", "broker": "ok",
                                       "embedded": True}).encode()
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_reads_are_retried_uploads_are_not_and_a_dead_service_raises(tmp_path):
    flaky = Flaky(failures=2)
    try:
        with Client(flaky.url, backoff=0.01) as c:
            assert c.health().status == "ok"
            assert flaky.requests == ["GET /v1/health"] * 3
        path = tmp_path / "m.safetensors"
        path.write_bytes(b"x")
        once = Flaky(failures=1)
        with Client(once.url, backoff=0.01) as c, \
                pytest.raises(ApiError, match="HTTP 503: busy"):
            c.upload_model(path, METADATA)  # a second upload would be a second model
        assert once.requests == ["POST /v1/models"]
        once.server.shutdown()
    finally:
        flaky.server.shutdown()
    with Client("http://127.0.0.1:9", retries=2, backoff=0.01) as c, \
            pytest.raises(httpx.ConnectError):
        c.health()


def test_remote_exit_codes_block_a_release_pipeline(service, model_file, tmp_path, capsys):
    """0 passed, 1 the gate failed, 2 bad input, 4 the job failed; the report is written."""
    from safetensors.torch import save_file

    from robustness.cli import main

    def remote(*args: str) -> int:
        return main(["remote", "--url", service.url, "--key", ADMIN_KEY, "-q", *args])

    def spec(rules) -> str:
        path = tmp_path / f"spec-{len(list(tmp_path.iterdir()))}.json"
        path.write_text(json.dumps({**AUDIT, "gate": rules}))
        return str(path)

    out = tmp_path / "report.json"
    assert remote("audit", "--model", str(model_file), "--spec", spec(gate(">=", 0.2)),
                  "--wait", "--out", str(out)) == 0
    report = json.loads(out.read_text())
    assert report["gate"]["passed"] and report["spec"]["gate"][0]["value"] == 0.2
    job = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert job["status"] == "succeeded"
    assert remote("audit", "--model-id", job["model_id"], "--spec", spec(gate(">=", 0.99)),
                  "--wait") == 1
    # Without --wait: the job, at once; `wait` then blocks on it like --wait.
    assert remote("audit", "--model-id", job["model_id"], "--spec", spec(gate("<=", 0.0))) == 0
    queued = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert remote("wait", queued["id"], "--out", str(out)) == 1
    assert not json.loads(out.read_text())["gate"]["passed"]
    assert remote("report", job["id"], "--out", str(out)) == 0
    capsys.readouterr()
    # The same examples and attacks under two gates: the figures are the same.
    assert remote("compare", job["id"], queued["id"]) == 0
    comparison = json.loads(capsys.readouterr().out)
    assert comparison["verdict"] == "unchanged" and comparison["examples"] == 40
    assert all(r["delta"] == 0 and not r["broken_in_b"] for r in comparison["results"])
    assert remote("audit", "--model-id", job["model_id"], "--spec", spec(
        [{"metric": "accuracy", "attack": "nope", "epsilon": 0.1, "op": ">=",
          "value": 0.5}])) == 2
    assert "gate" in capsys.readouterr().err
    wrong = tmp_path / "wrong.safetensors"
    save_file({"fc.weight": torch.zeros(10, 4)}, str(wrong))
    assert remote("audit", "--model", str(wrong), "--metadata", str(model_file.with_suffix(
        ".json")), "--spec", spec(gate(">=", 0.2)), "--wait") == 4
    assert "failed" in capsys.readouterr().err
    assert main(["remote", "audit", "--model-id", "x", "--spec", spec([])]) == 2  # no URL


def test_one_request_id_from_the_submission_to_the_workers_logs_and_the_callback(
        service, model_file):
    """X-Request-ID: echoed, stored on the job, on every JSON log line of the gateway and
    of the worker that ran the job, and on the job's callback."""
    from service_processes import Receiver

    with Receiver() as hook, Client(service.url, ADMIN_KEY) as c:
        model = c.upload_model(model_file, METADATA)
        r = c.http.post("/v1/audits", headers={"X-Request-ID": "release-42"}, json={
            "model_id": model.id, **AUDIT, "callback_url": f"http://127.0.0.1:{hook.port}/h"})
        assert r.status_code == 202 and r.headers["X-Request-ID"] == "release-42"
        job = c.wait(Job.model_validate(r.json()), timeout=120)
        assert job.status == "succeeded" and job.request_id == "release-42"
        deadline = time.monotonic() + 30
        while not hook.received and time.monotonic() < deadline:
            time.sleep(0.2)
        assert hook.headers[0]["X-Request-ID"] == "release-42"
        # An id that is not a plausible one is replaced.
        other = c.http.get("/v1/health", headers={"X-Request-ID": "bad/id;" * 20})
        assert len(other.headers["X-Request-ID"]) == 32
    lines = [json.loads(line) for line in service.logs["gateway"].read_text().splitlines()
             if line.startswith("{")]
    tagged = [line for line in lines if line.get("request_id") == "release-42"]
    # the gateway's access line for the submission, and the worker's lines for the job
    assert any(line["logger"] == "robustness.access" and line["status"] == 202
               for line in tagged), tagged
    assert any(line.get("job_id") == job.id and line["logger"].startswith("workers")
               for line in tagged), tagged
