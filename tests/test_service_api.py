"""The gateway in process (no worker): validation, problem+json errors, the model registry,
job records and the reconciler that re-enqueues jobs whose message was lost."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
import torch
from fastapi.testclient import TestClient
from service_processes import METADATA, PostgresDatabase, fresh_redis_url
from sqlalchemy import update

from robustness.models import save_state_dict
from service.app import create_app
from service.reconcile import queued_message_ids, reconcile
from service.settings import GatewaySettings as Settings
from store import transitions
from store.db import JobRecord, utcnow
from workers.settings import WorkerSettings

AUDIT = {"dataset": {"name": "digits", "n": 20}, "attacks": [{"name": "fgsm"}],
         "epsilons": [0.1]}


@pytest.fixture
def settings(tmp_path):
    # The tests drive reconcile/fire_due/callbacks themselves: keep the gateway's own
    # housekeeping threads from racing them. Callbacks go to the test's own receiver.
    return Settings(home=tmp_path, max_upload_bytes=2_000_000, reconcile_seconds=3600,
                    admin_key=ADMIN_KEY, callback_hosts="127.0.0.1")


ADMIN_KEY = "test-admin-key"
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings), headers=AUTH) as c:
        yield c


@pytest.fixture(scope="module")
def weights(digits_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "digits.safetensors"
    save_state_dict(digits_model.net, path)
    return path.read_bytes()


def upload(client, data: bytes, metadata=METADATA, name="m.safetensors"):
    meta = metadata if isinstance(metadata, str) else json.dumps(metadata)
    return client.post("/v1/models", files={"file": (name, io.BytesIO(data))},
                       data={"metadata": meta})


def assert_problem(r, status: int, *fragments: str):
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == status and body["title"]
    for fragment in fragments:
        assert fragment in body["detail"], body["detail"]


def test_model_registry_round_trip(client, weights, settings):
    r = upload(client, weights)
    assert r.status_code == 201, r.text
    model = r.json()
    assert model["format"] == "safetensors" and model["size"] == len(weights)
    stored = settings.artifacts / model["sha256"][:2] / model["sha256"]
    assert stored.read_bytes() == weights
    assert client.get(f"/v1/models/{model['id']}").json()["metadata"] == METADATA
    listed = client.get("/v1/models").json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == model["id"]
    # A second registration of the same bytes shares the file; deleting one keeps it.
    twin = upload(client, weights).json()
    assert twin["sha256"] == model["sha256"] and twin["id"] != model["id"]
    assert client.delete(f"/v1/models/{model['id']}").status_code == 204
    assert stored.is_file()
    assert client.delete(f"/v1/models/{twin['id']}").status_code == 204
    assert not stored.exists()
    assert_problem(client.get(f"/v1/models/{model['id']}"), 404, model["id"])


@pytest.mark.parametrize("data, metadata, status, fragments", [
    (b"hello, not a model", METADATA, 422, ["unrecognized file content"]),
    (b"", METADATA, 422, ["file: is empty"]),
    (None, {"name": "x"}, 422, ["metadata.architecture: required"]),
    (None, {**METADATA, "architecture": "resnet9000"}, 422, ["unknown architecture",
                                                             "resnet9000"]),
    (None, "{not json", 422, ["metadata: not valid JSON"]),
    (None, {**METADATA, "num_classes": 1}, 422, ["num_classes must be at least 2"]),
    (b"\0" * 2_000_001, METADATA, 413, ["file: larger than the limit of 2000000 bytes"]),
])
def test_bad_uploads_are_refused_with_a_reason(client, weights, settings, data, metadata,
                                               status, fragments):
    assert_problem(upload(client, weights if data is None else data, metadata), status,
                   *fragments)
    assert client.get("/v1/models").json()["total"] == 0
    leftovers = [p for p in settings.artifacts.rglob("*") if p.is_file()]
    assert leftovers == [], "a refused upload must not leave its bytes behind"


@pytest.mark.parametrize("body, status, fragments", [
    (b"{oops", 400, ["body: not valid JSON"]),
    (b"[1, 2]", 422, ["body: must be a JSON object"]),
    (json.dumps({**AUDIT, "epsilons": [1.5]}).encode(), 422, ["exceeds the input range"]),
    (json.dumps({**AUDIT, "attacks": [{"name": "deepfoo"}]}).encode(), 422, ["deepfoo"]),
    (json.dumps({**AUDIT, "dataset": {"name": "imagenet"}}).encode(), 422, ["dataset.name"]),
    (json.dumps({**AUDIT, "speed": "fast"}).encode(), 422, ["speed: Extra inputs"]),
    (json.dumps({**AUDIT, "preset": "strongest"}).encode(), 422,
     ["preset: Input should be 'standard', 'quick' or 'rand'"]),
    (json.dumps({**AUDIT, "preset": "quick"}).encode(), 422,
     ["preset: cannot be combined with attacks"]),
    (json.dumps({**AUDIT, "attacks": [{"name": "cascade", "preset": "x"}]}).encode(), 422,
     ["attacks[0].preset: Input should be"]),
    (json.dumps(AUDIT).encode(), 422, ["model_id: required"]),
    (json.dumps({**AUDIT, "model_id": "mdl_nope"}).encode(), 422,
     ["model_id: no model 'mdl_nope'"]),
    (json.dumps({**AUDIT, "model_id": "m", "dataset": {"name": "tensors",
                                                       "path": "/etc/passwd"}}).encode(),
     422, ["dataset.path: '/etc/passwd' must be relative to the data root"]),
    (json.dumps({**AUDIT, "model_id": "m", "dataset": {"name": "tensors",
                                                       "path": "a/../../x.npz"}}).encode(),
     422, ["dataset.path: 'a/../../x.npz' must be relative"]),
])
def test_bad_audit_specs_are_4xx_naming_the_field(client, body, status, fragments):
    r = client.post("/v1/audits", content=body, headers={"Content-Type": "application/json"})
    assert_problem(r, status, *fragments)


def test_bad_training_specs_are_4xx_naming_the_field(client):
    base = {"architecture": "madry_mnist", "dataset": {"name": "digits"}, "epochs": 1}
    r = client.post("/v1/trainings", json={**base, "method": "pgd"})
    assert_problem(r, 422, "epsilon: required by method 'pgd'")
    r = client.post("/v1/trainings", json={**base, "method": "distillation",
                                           "teacher_model_id": "mdl_gone"})
    assert_problem(r, 422, "teacher_model_id: no model 'mdl_gone'")


def test_queued_job_lifecycle_without_a_worker(client, weights):
    model_id = upload(client, weights).json()["id"]
    r = client.post("/v1/audits", json={"model_id": model_id, **AUDIT})
    assert r.status_code == 202
    job = r.json()
    assert r.headers["Location"] == f"/v1/audits/{job['id']}"
    assert job["status"] == "queued" and job["progress"] == {
        "completed": 0, "total": 0, "fraction": 0.0, "phase": None}
    assert_problem(client.get(f"/v1/audits/{job['id']}/report"), 409, "is queued")
    assert_problem(client.delete(f"/v1/models/{model_id}"), 409, job["id"])
    assert client.get("/v1/audits", params={"status": "queued"}).json()["items"][0]["id"] \
        == job["id"]
    r = client.post(f"/v1/audits/{job['id']}/cancel")
    assert r.status_code == 202 and r.json()["status"] == "cancelled"
    assert_problem(client.get("/v1/trainings/" + job["id"]), 404)
    assert_problem(client.get("/v1/audits/aud_missing"), 404, "aud_missing")
    assert client.delete(f"/v1/models/{model_id}").status_code == 204


def test_openapi_and_docs(client):
    schema = client.get("/openapi.json").json()
    assert "/v1/audits/{audit_id}/examples" in schema["paths"]
    assert "AuditSpec" in schema["components"]["schemas"]
    assert "TrainingSpec" in schema["components"]["schemas"]
    ref = schema["paths"]["/v1/audits"]["post"]["requestBody"]["content"]["application/json"]
    assert ref["schema"]["$ref"] == "#/components/schemas/AuditSpec"
    assert client.get("/docs").status_code == 200
    metrics = client.get("/metrics").text
    assert "robustness_http_requests_total" in metrics and "robustness_models " in metrics


def test_claims_are_exclusive_and_outcomes_stored_once(settings):
    app = create_app(settings)
    db = app.state.gw.db
    job = transitions.create_job(db, "audit", AUDIT, None)
    token = transitions.claim(db, job.id, lease_seconds=60)
    assert token and transitions.claim(db, job.id, lease_seconds=60) is None
    assert transitions.touch(db, job.id, token, progress_completed=1, progress_total=4)
    # The worker went silent past its lease: another claim takes over and the old one is out.
    with db.session.begin() as s:
        s.execute(update(JobRecord).where(JobRecord.id == job.id)
                  .values(heartbeat_at=utcnow() - timedelta(seconds=120)))
    second = transitions.claim(db, job.id, lease_seconds=60)
    assert second and second != token
    assert not transitions.touch(db, job.id, token)
    assert not transitions.finish(db, job.id, token, "succeeded")
    assert transitions.finish(db, job.id, second, "succeeded", report_sha256="0" * 64)
    assert not transitions.finish(db, job.id, second, "failed")
    done = transitions.get_job(db, job.id)
    assert (done.status, done.attempts, done.report_sha256) == ("succeeded", 2, "0" * 64)


def test_reconciler_re_enqueues_jobs_whose_message_redis_lost(tmp_path, weights):
    import redis

    pg = PostgresDatabase()
    try:
        settings = Settings(home=tmp_path, redis_url=fresh_redis_url(), database_url=pg.url,
                            reconcile_seconds=3600, admin_key=ADMIN_KEY)
        with TestClient(create_app(settings), headers=AUTH) as client:
            model_id = upload(client, weights).json()["id"]
            job_id = client.post("/v1/audits", json={"model_id": model_id, **AUDIT}).json()["id"]
            gw = client.app.state.gw
            assert queued_message_ids(settings.broker_url) == {job_id}
            redis.Redis.from_url(settings.redis_url).flushdb()  # a restart without persistence
            assert queued_message_ids(settings.broker_url) == set()
            # Within the grace period nothing is resent; after it, the lost message is.
            assert reconcile(gw.celery, gw.db, lease_seconds=60, grace_seconds=60,
                             broker_url=settings.broker_url) == []
            assert reconcile(gw.celery, gw.db, lease_seconds=60, grace_seconds=0,
                             broker_url=settings.broker_url) == [job_id]
            assert queued_message_ids(settings.broker_url) == {job_id}
            # A message that is present is not duplicated.
            assert reconcile(gw.celery, gw.db, lease_seconds=60, grace_seconds=0,
                             broker_url=settings.broker_url) == []
            gw.db.dispose()
    finally:
        pg.drop()


def test_schedules_fire_ordinary_audits_and_call_back(client, weights):
    from service.callbacks import CallbackSender
    from service.schedules import fire_due
    from tests.service_processes import Receiver

    with Receiver() as hook:
        model_id = upload(client, weights).json()["id"]
        body = {"cron": "0 3 * * *", "audit": {"model_id": model_id, **AUDIT},
                "callback_url": f"http://127.0.0.1:{hook.port}/hook"}
        r = client.post("/v1/schedules", json=body)
        assert r.status_code == 201, r.text
        schedule = r.json()
        assert schedule["next_run_at"].endswith("T03:00:00Z")
        assert client.get("/v1/schedules").json()["total"] == 1
        gw = client.app.state.gw
        # Nothing is due before 03:00; at 03:00 exactly one audit is created, once.
        from datetime import datetime

        due = datetime.fromisoformat(schedule["next_run_at"])
        assert fire_due(gw, now=due.replace(hour=2)) == []
        (audit_id,) = fire_due(gw, now=due)
        assert fire_due(gw, now=due) == []
        listed = client.get("/v1/audits", params={"schedule_id": schedule["id"]}).json()
        assert [a["id"] for a in listed["items"]] == [audit_id]
        assert listed["items"][0]["spec"] == {"model_id": model_id, **AUDIT}
        after = client.get(f"/v1/schedules/{schedule['id']}").json()
        assert after["last_audit_id"] == audit_id and after["next_run_at"] > \
            schedule["next_run_at"]
        # The audit ends (cancelled here: no worker runs in this test): the hook hears of it.
        client.post(f"/v1/audits/{audit_id}/cancel")
        sender = CallbackSender(gw)
        assert sender.dispatch() == 1
        sender.pool.shutdown(wait=True)  # the delivery ran on the sender's own pool
        assert CallbackSender(gw).dispatch() == 0
        # Signed as Standard Webhooks say, with the tenant's secret an admin can read.
        from standardwebhooks.webhooks import Webhook

        secret = client.get("/v1/webhooks/secret").json()["secret"]
        received = Webhook(secret).verify(hook.received[0][2], hook.headers[0])
        assert received["type"] == "audit.cancelled" and received["data"]["id"] == audit_id
        assert received["data"]["status"] == "cancelled"
        assert client.get(f"/v1/audits/{audit_id}").json()["callback"] == {
            "url": body["callback_url"], "status": "delivered", "attempts": 1}
        assert client.delete(f"/v1/schedules/{schedule['id']}").status_code == 204
        assert_problem(client.get(f"/v1/schedules/{schedule['id']}"), 404)


def test_a_schedule_over_its_tenants_job_quota_skips_its_firing(tmp_path, weights):
    """Schedules obey the unfinished-jobs quota too: a firing that would exceed it is skipped
    (and the schedule moves on to its next time), instead of queueing without bound."""
    from datetime import datetime

    from service.schedules import fire_due

    settings = Settings(home=tmp_path, reconcile_seconds=3600, admin_key=ADMIN_KEY,
                        max_unfinished_jobs_per_tenant=1)
    with TestClient(create_app(settings), headers=AUTH) as c:
        model_id = upload(c, weights).json()["id"]
        schedule = c.post("/v1/schedules", json={"cron": "0 3 * * *",
                                                 "audit": {"model_id": model_id, **AUDIT}}).json()
        due = datetime.fromisoformat(schedule["next_run_at"])
        gw = c.app.state.gw
        (first,) = fire_due(gw, now=due)  # no worker runs here: it stays queued
        later = datetime.fromisoformat(c.get(f"/v1/schedules/{schedule['id']}")
                                       .json()["next_run_at"])
        assert fire_due(gw, now=later) == []  # at the quota: skipped
        after = c.get(f"/v1/schedules/{schedule['id']}").json()
        assert datetime.fromisoformat(after["next_run_at"]) > later
        assert after["last_audit_id"] == first
        assert [a["id"] for a in c.get("/v1/audits").json()["items"]] == [first]


@pytest.mark.parametrize("body, fragment", [
    ({"cron": "61 * * * *", "audit": AUDIT}, "cron: '61 * * * *' is not a 5-field cron"),
    ({"cron": "0 3 * * *", "audit": {"dataset": {"name": "digits"}, "preset": "standard",
                                     "attacks": [{"name": "fgsm"}]}},
     "preset: cannot be combined with attacks"),
    ({"cron": "0 3 * * *", "audit": {**AUDIT, "epsilons": [3]}}, "exceeds the input range"),
    ({"cron": "0 3 * * *", "audit": AUDIT, "callback_url": "ftp://x"}, "callback_url"),
    ({"cron": "0 3 * * *", "audit": {**AUDIT, "model_id": "mdl_x"}}, "audit.model_id: no model"),
    ({"cron": "0 3 * * *", "audit": AUDIT, "callback_url": "http://[::1"}, "is not a URL"),
])
def test_bad_schedules_are_refused(client, body, fragment):
    assert_problem(client.post("/v1/schedules", json=body), 422, fragment)


def test_a_job_that_keeps_killing_workers_fails_after_max_attempts(settings):
    from store.queue import make_celery

    app = create_app(settings)
    db = app.state.gw.db
    job = transitions.create_job(db, "audit", AUDIT, None)
    for attempt in range(1, 4):
        assert transitions.claim(db, job.id, lease_seconds=60)
        if (settings.home / "broker.db").exists():  # the worker took the message, then died
            import sqlite3

            with sqlite3.connect(settings.home / "broker.db") as conn:
                conn.execute("UPDATE kombu_message SET visible = 0")
        with db.session.begin() as s:  # the worker died: no heartbeat for two leases
            s.execute(update(JobRecord).where(JobRecord.id == job.id)
                      .values(heartbeat_at=utcnow() - timedelta(seconds=120),
                              enqueued_at=utcnow() - timedelta(seconds=120)))
        resent = reconcile(make_celery(settings), db, lease_seconds=60, grace_seconds=0,
                           broker_url=settings.broker_url, max_attempts=3)
        assert resent == ([job.id] if attempt < 3 else [])
    done = transitions.get_job(db, job.id)
    assert done.status == "failed" and "3 times" in done.error and done.attempts == 3


def test_worker_side_limits_and_missing_data_fail_the_job_with_a_reason(tmp_path, weights):
    """`run_job` in process (what the Celery task calls): the time limit stops a job between
    batches, and data that is not there fails it with the library's message."""
    from service.demo import register_file
    from workers.context import WorkerContext
    from workers.running import run_job

    path = tmp_path / "m.safetensors"
    path.write_bytes(weights)
    # (a long grace: this job stops at its next batch, however busy the machine)
    ctx = WorkerContext(WorkerSettings(home=tmp_path, audit_time_limit=1, heartbeat_seconds=0.2,
                                       data_root=tmp_path / "no-data", device="cpu",
                                       stop_grace_seconds=300))
    model_id = register_file(ctx.db, ctx.store, path, METADATA)
    slow = transitions.create_job(ctx.db, "audit", {
        "model_id": model_id, "dataset": {"name": "digits", "n": 200},
        "attacks": [{"name": "pgd", "steps": 200}], "epsilons": [0.1, 0.2],
        "batch_size": 20}, model_id)
    assert run_job(ctx, slow.id) == "failed"
    done = transitions.get_job(ctx.db, slow.id)
    assert done.error == "time limit of 1 s exceeded"
    assert 0 < done.progress_completed < done.progress_total, (done.error, done.phase)
    mnist = transitions.create_job(ctx.db, "audit", {"model_id": model_id,
                                              "dataset": {"name": "mnist", "n": 10},
                                              **{k: AUDIT[k] for k in ("attacks", "epsilons")}},
                            model_id)
    assert run_job(ctx, mnist.id) == "failed"
    error = transitions.get_job(ctx.db, mnist.id).error
    assert "in <data root>/MNIST/raw" in error and "internal error" not in error
    assert run_job(ctx, mnist.id).startswith("not claimable")


def test_the_demo_model_of_make_run(tmp_path):
    """`robustness serve --demo` (make run): a model trained in seconds on real digits, and an
    audit spec its printed curl line submits."""
    import torch

    from robustness.data import load_dataset
    from robustness.models import load_model
    from robustness.spec import parse_audit_spec
    from service.demo import train_demo

    weights, metadata, audit = train_demo(None)
    spec = parse_audit_spec({"model_id": "mdl_demo", **audit})
    model = load_model(weights, metadata, device="cpu").eval()
    data = load_dataset(spec.dataset)
    with torch.no_grad():
        accuracy = float((model(data.x).argmax(1) == data.y).float().mean())
    assert metadata["name"] == "digits-demo" and accuracy > 0.9



def test_query_parameters_out_of_range_are_4xx(client, weights):
    assert_problem(client.get("/v1/models", params={"offset": 10**20}), 422, "offset")
    assert_problem(client.get("/v1/audits", params={"limit": 0}), 422, "limit")
    assert_problem(client.get("/v1/audits", params={"status": "done"}), 422, "status")


def test_refused_upload_never_deletes_bytes_stored_for_others(client, weights, settings):
    """Uploading a report's bytes as a 'model' is refused, and the report stays."""
    model_id = upload(client, weights).json()["id"]
    gw = client.app.state.gw
    report_sha = gw.store.put_bytes(b'{"schema_version": 1}')
    job = transitions.create_job(gw.db, "audit", AUDIT, model_id)
    with gw.db.session.begin() as s:
        s.execute(update(JobRecord).where(JobRecord.id == job.id)
                  .values(report_sha256=report_sha))
    assert_problem(upload(client, b'{"schema_version": 1}'), 422, "unrecognized file content")
    assert gw.store.exists(report_sha)
    # A schedule that audits a model keeps it from being deleted.
    r = client.post("/v1/schedules", json={"cron": "0 3 * * *",
                                           "audit": {"model_id": model_id, **AUDIT}})
    client.post(f"/v1/audits/{job.id}/cancel")
    assert_problem(client.delete(f"/v1/models/{model_id}"), 409, r.json()["id"])


def test_a_cancel_its_dead_worker_never_saw_ends_the_job(settings):
    from store.queue import make_celery

    db = create_app(settings).state.gw.db
    job = transitions.create_job(db, "audit", AUDIT, None)
    assert transitions.claim(db, job.id, lease_seconds=60)
    assert transitions.request_cancel(db, job.id) == "running"
    with db.session.begin() as s:
        s.execute(update(JobRecord).where(JobRecord.id == job.id)
                  .values(heartbeat_at=utcnow() - timedelta(seconds=120)))
    assert reconcile(make_celery(settings), db, lease_seconds=60, grace_seconds=0,
                     broker_url=settings.broker_url) == []
    assert transitions.get_job(db, job.id).status == "cancelled"


def test_embedded_broker_lost_message_is_re_enqueued(client, weights, settings):
    import sqlite3

    model_id = upload(client, weights).json()["id"]
    job_id = client.post("/v1/audits", json={"model_id": model_id, **AUDIT}).json()["id"]
    assert queued_message_ids(settings.broker_url) == {job_id}
    with sqlite3.connect(settings.home / "broker.db") as conn:  # a fetch by a worker that died
        conn.execute("UPDATE kombu_message SET visible = 0")
    assert queued_message_ids(settings.broker_url) == set()
    gw = client.app.state.gw
    assert reconcile(gw.celery, gw.db, lease_seconds=60, grace_seconds=0,
                     broker_url=settings.broker_url) == [job_id]
    assert queued_message_ids(settings.broker_url) == {job_id}


def test_adversarial_keys_round_trip_any_epsilon(digits_model):
    """ε = 8/255 has no short decimal form; its stored tensor must still be found."""
    from robustness.data import load_dataset
    from robustness.evaluation import run_sweep
    from robustness.evaluation.export import adversarial_tensors
    from robustness.spec import parse_audit_spec
    from service.reports import adversarial_file

    eps = 8 / 255
    spec = parse_audit_spec({"dataset": {"name": "digits", "n": 20},
                             "attacks": [{"name": "fgsm"}], "epsilons": [eps, 8.0000001 / 255]})
    result = run_sweep(digits_model, load_dataset(spec.dataset), spec, device="cpu",
                       collect_adversarial=True)
    tensors = adversarial_tensors(result, result.report)
    data, _ = adversarial_file(tensors, result.report, "fgsm", eps, "safetensors")
    from safetensors.torch import load

    out = load(data)
    assert torch.equal(out["x_adv"], result.adversarial[("fgsm", eps)])
    from service.problems import Problem

    with pytest.raises(Problem, match="finite"):
        adversarial_file(tensors, result.report, "fgsm", float("inf"), "npz")



def test_keys_scopes_and_tenants(client, settings, weights):
    anonymous = TestClient(client.app)
    r = anonymous.get("/v1/models")
    assert_problem(r, 401, "Bearer")
    assert r.headers["www-authenticate"] == "Bearer"
    assert_problem(anonymous.get("/v1/models", headers={"Authorization": "Bearer nope"}), 401,
                   "unknown or revoked")
    assert anonymous.get("/v1/health").status_code == 200  # for load balancers

    def make(tenant, scopes):
        r = client.post("/v1/keys", json={"tenant": tenant, "scopes": scopes, "name": tenant})
        assert r.status_code == 201, r.text
        return {"Authorization": f"Bearer {r.json()['key']}"}, r.json()["id"]

    alice, _ = make("alice", ["read", "submit"])
    bob, bob_id = make("bob", ["read", "submit"])
    reader, _ = make("alice", ["read"])
    model = client.post("/v1/models", headers=alice,
                        files={"file": ("m.safetensors", io.BytesIO(weights))},
                        data={"metadata": json.dumps(METADATA)}).json()
    audit = client.post("/v1/audits", headers=alice,
                        json={"model_id": model["id"], **AUDIT}).json()
    # Bob sees none of it: another tenant's ids are 404, lists are empty, his audits of
    # Alice's model are refused as if it did not exist.
    assert client.get("/v1/models", headers=bob).json()["total"] == 0
    assert_problem(client.get(f"/v1/models/{model['id']}", headers=bob), 404)
    assert_problem(client.get(f"/v1/audits/{audit['id']}", headers=bob), 404)
    assert_problem(client.post(f"/v1/audits/{audit['id']}/cancel", headers=bob), 404)
    assert_problem(client.delete(f"/v1/models/{model['id']}", headers=bob), 404)
    assert_problem(client.post("/v1/audits", headers=bob,
                               json={"model_id": model["id"], **AUDIT}), 422, "no model")
    assert client.get("/v1/audits", headers=bob).json()["items"] == []
    # The admin key is the default tenant's: Alice's models are not its either.
    assert client.get("/v1/models").json()["total"] == 0
    # Scopes: a read key reads, cannot submit, cannot manage keys.
    assert client.get(f"/v1/audits/{audit['id']}", headers=reader).status_code == 200
    assert_problem(client.post("/v1/audits", headers=reader,
                               json={"model_id": model["id"], **AUDIT}), 403, "'submit' scope")
    assert_problem(client.get("/v1/keys", headers=alice), 403, "'admin' scope")
    assert_problem(client.get("/metrics", headers=alice), 403)
    # Keys are stored hashed; a revoked key stops working at once.
    listed = client.get("/v1/keys").json()["items"]
    assert {k["tenant"] for k in listed} >= {"alice", "bob"}
    assert all("key" not in k and "secret" not in json.dumps(k) for k in listed)
    db_text = (settings.home / "robustness.db").read_bytes()
    assert alice["Authorization"].split(".", 1)[1].encode() not in db_text
    assert client.delete(f"/v1/keys/{bob_id}").status_code == 204
    assert_problem(client.get("/v1/models", headers=bob), 401, "revoked")
    assert_problem(client.post("/v1/keys", json={"tenant": "x y", "scopes": ["read"]}), 422,
                   "tenant")
    assert_problem(client.post("/v1/keys", json={"tenant": "x", "scopes": ["root"]}), 422,
                   "scopes")


def test_generated_admin_key_and_localhost_only_anonymous(tmp_path):
    settings = Settings(home=tmp_path, reconcile_seconds=3600)
    app = create_app(settings)
    key_file = tmp_path / "admin.key"
    assert key_file.read_text().strip() == app.state.admin_key
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert create_app(settings).state.admin_key == app.state.admin_key  # kept across restarts
    with TestClient(app) as c:
        assert c.get("/v1/models").status_code == 401
        r = c.get("/v1/keys", headers={"Authorization": f"Bearer {app.state.admin_key}"})
        assert r.status_code == 200
    dev = Settings(home=tmp_path / "dev", reconcile_seconds=3600, allow_anonymous=True)
    with TestClient(create_app(dev)) as c:  # TestClient calls from its loopback stand-in
        assert c.get("/v1/models").status_code == 200
        assert c.get("/v1/keys").status_code == 403
    with TestClient(create_app(dev), client=("10.1.2.3", 5000)) as c:
        assert c.get("/v1/models").status_code == 401


def test_absurd_jobs_are_refused_before_they_are_queued(client, weights):
    model_id = upload(client, weights).json()["id"]
    absurd = {"model_id": model_id, "dataset": {"name": "mnist", "split": "test"},
              "attacks": [{"name": "pgd", "steps": 10000, "restarts": 100}],
              "epsilons": [0.1, 0.2, 0.3]}
    r = client.post("/v1/audits", json=absurd)
    assert_problem(r, 422, "budget: this audit needs about 3e+10", "ROBUSTNESS_MAX_JOB_PASSES")
    training = {"architecture": "madry_mnist", "dataset": {"name": "mnist"}, "method": "pgd",
                "epsilon": 0.3, "steps": 1000, "epochs": 1000}
    assert_problem(client.post("/v1/trainings", json=training), 422, "budget: this training")
    assert client.get("/v1/audits").json()["items"] == []  # nothing was queued
    ok = {"model_id": model_id, **AUDIT, "attacks": [{"name": "pgd", "steps": 40}]}
    assert client.post("/v1/audits", json=ok).status_code == 202


def test_idempotency_key_returns_the_same_job(client, weights):
    model_id = upload(client, weights).json()["id"]
    body = {"model_id": model_id, **AUDIT}
    first = client.post("/v1/audits", json=body, headers={"Idempotency-Key": "k-1"})
    again = client.post("/v1/audits", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(client.get("/v1/audits").json()["items"]) == 1
    other = client.post("/v1/audits", json={**body, "epsilons": [0.2]},
                        headers={"Idempotency-Key": "k-1"})
    assert_problem(other, 422, "Idempotency-Key: 'k-1' was used for another request")
    assert client.post("/v1/audits", json=body, headers={"Idempotency-Key": "k-2"}).json()[
        "id"] != first.json()["id"]
    assert client.post("/v1/audits", json=body).json()["id"] != first.json()["id"]


class _Marker:
    """Unpickling this would create a file: the payload of a malicious checkpoint."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _bad_checkpoints(tmp_path, weights):
    import pickle

    from safetensors.torch import load, save

    marker = tmp_path / "pwned"
    good = load(weights)
    nan = {k: v.clone() for k, v in good.items()}
    next(iter(nan.values())).view(-1)[0] = float("nan")
    wrong = {k: (v[:1].clone() if v.ndim > 1 else v) for k, v in good.items()}
    pickled = tmp_path / "evil.pt"
    torch.save({"state_dict": _Marker(marker)}, pickled, pickle_module=pickle)
    # A torch-layout zip whose one deflated entry would inflate to 1 GiB from ~1 MB.
    import zipfile

    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        with zf.open("archive/data/0", "w", force_zip64=True) as entry:
            block = bytes(1 << 20)
            for _ in range(1024):
                entry.write(block)
    return marker, {
        "zip bomb": (bomb.read_bytes(), "zip bomb"),
        "pickle payload": (pickled.read_bytes(), "refused to unpickle"),
        "truncated": (weights[: len(weights) // 2], "truncated"),
        "NaN weights": (save(nan), "NaN"),
        "wrong shapes": (save(wrong), "shape"),
    }


def test_untrusted_checkpoints_fail_their_job_with_a_reason_and_never_run_code(
        client, settings, weights, tmp_path):
    from workers.context import WorkerContext
    from workers.running import run_job

    marker, cases = _bad_checkpoints(tmp_path, weights)
    ctx = WorkerContext(WorkerSettings(home=settings.home, device="cpu"))
    for name, (data, reason) in cases.items():
        r = upload(client, data, name=f"{name}.bin")
        if r.status_code == 422:  # refused at the door is as good as a failed job
            assert reason.lower() in r.json()["detail"].lower(), (name, r.json())
            continue
        assert r.status_code == 201, (name, r.text)
        job = client.post("/v1/audits", json={"model_id": r.json()["id"], **AUDIT}).json()
        assert run_job(ctx, job["id"]) == "failed", name
        error = client.get(f"/v1/audits/{job['id']}").json()["error"]
        assert reason.lower() in error.lower() and "internal error" not in error, (name, error)
    assert not marker.exists(), "unpickling ran the checkpoint's code"


def test_keys_command_creates_lists_and_revokes(tmp_path, monkeypatch, capsys):
    """`robustness keys …` on the server, against the same database the gateway uses."""
    from robustness.cli import main as cli
    from store.settings import get_settings

    monkeypatch.setenv("ROBUSTNESS_HOME", str(tmp_path))
    for var in ("DATABASE_URL", "REDIS_URL", "ROBUSTNESS_ADMIN_KEY"):
        monkeypatch.delenv(var, raising=False)
    get_settings.cache_clear()
    try:
        assert cli(["keys", "create", "--tenant", "team-a", "--scopes", "read"]) == 0
        key = capsys.readouterr().out.strip()
        assert key.startswith("rbk_")
        app = create_app(Settings(home=tmp_path, reconcile_seconds=3600))
        with TestClient(app, headers={"Authorization": f"Bearer {key}"}) as c:
            assert c.get("/v1/models").status_code == 200
            assert c.post("/v1/audits", json=AUDIT).status_code == 403
            assert cli(["keys", "list"]) == 0
            line = next(x for x in capsys.readouterr().out.splitlines() if "team-a" in x)
            key_id = line.split("\t")[0]
            assert "\tread\tactive" in line and key.split(".", 1)[1] not in line
            assert cli(["keys", "revoke", key_id]) == 0
            assert c.get("/v1/models").status_code == 401
        assert cli(["keys", "revoke", key_id]) == 2  # already revoked: a clear error
        assert cli(["keys", "create", "--tenant", "a b"]) == 2
        assert "tenant" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()



def test_batch_size_and_callback_host_limits(tmp_path, weights):
    settings = Settings(home=tmp_path, reconcile_seconds=3600, admin_key=ADMIN_KEY,
                        max_batch_size=512, callback_hosts="hooks.example.com")
    with TestClient(create_app(settings), headers=AUTH) as client:
        model_id = upload(client, weights).json()["id"]
        big = {"model_id": model_id, **AUDIT, "batch_size": 1024}
        assert_problem(client.post("/v1/audits", json=big), 422,
                       "batch_size: 1024 is above this service's limit of 512")
        attack = {"model_id": model_id, **AUDIT,
                  "attacks": [{"name": "fgsm", "batch_size": 600}]}
        assert_problem(client.post("/v1/audits", json=attack), 422, "attacks[0].batch_size")
        training = {"architecture": "madry_mnist", "dataset": {"name": "digits"},
                    "method": "standard", "epochs": 1, "validation": {"batch_size": 2000}}
        assert_problem(client.post("/v1/trainings", json=training), 422,
                       "validation.batch_size")
        hook = {"cron": "0 3 * * *", "audit": {"model_id": model_id, **AUDIT}}
        r = client.post("/v1/schedules", json={**hook,
                                               "callback_url": "http://127.0.0.1:9/x"})
        assert_problem(r, 422, "host '127.0.0.1' is not among the allowed callback hosts")
        r = client.post("/v1/schedules", json={**hook,
                                               "callback_url": "https://hooks.example.com/a"})
        assert r.status_code == 201
        # The workers' copy of the limit bounds the batch an audit without one is given.
        from workers.context import WorkerContext
        from workers.running import run_job

        job_id = client.post("/v1/audits", json={"model_id": model_id, **AUDIT}).json()["id"]
        ctx = WorkerContext(WorkerSettings(home=tmp_path, device="cpu", max_batch_size=12))
        assert run_job(ctx, job_id) == "succeeded"
        report = client.get(f"/v1/audits/{job_id}/report").json()
        assert report["spec"]["batch_size"] == 8  # the largest power of two within 12
        assert report["provenance"]["batch_size"]["chosen"] == "free memory"
        assert report["provenance"]["batch_size"]["cap"] == 8


def test_a_certification_job_from_submission_to_report(client, weights, settings):
    """POST /v1/certifications: checked at the door (each bad field a 422 naming it, the
    budget counting n0 + n and the attack per example), run by the worker's runner, its
    report served and its figures in the job's summary."""
    from robustness.evaluation.report_schema import CertificationReport
    from robustness.smoothing import radius
    from workers.context import WorkerContext
    from workers.running import run_job

    model_id = upload(client, weights).json()["id"]
    body = {"model_id": model_id, "dataset": {"name": "digits", "n": 10}, "sigma": 0.25,
            "n0": 20, "n": 500, "radii": [0, 0.25], "seed": 3,
            "attack": {"steps": 4, "draws": 4, "n": 100}}
    for change, field in (({"sigma": 0}, "sigma"), ({"n0": 0}, "n0"), ({"n": 10**9}, "n"),
                          ({"alpha": 0.5}, "alpha"), ({"model_id": "mdl_nope"}, "model_id"),
                          ({"attack": {"batch_size": 5000}}, "attack.batch_size")):
        assert_problem(client.post("/v1/certifications", json={**body, **change}), 422, field)
    assert_problem(client.post("/v1/certifications", json={
        **body, "dataset": {"name": "mnist", "split": "train"}, "n": 10**6}), 422,
        "budget", "ROBUSTNESS_MAX_JOB_PASSES")
    r = client.post("/v1/certifications", json=body, headers={"Idempotency-Key": "c1"})
    assert r.status_code == 202 and r.headers["Location"].startswith("/v1/certifications/crt_")
    job_id = r.json()["id"]
    again = client.post("/v1/certifications", json=body, headers={"Idempotency-Key": "c1"})
    assert again.json()["id"] == job_id and again.headers["Idempotent-Replayed"] == "true"
    assert_problem(client.get(f"/v1/certifications/{job_id}/report"), 409, "queued")
    assert client.get(f"/v1/audits/{job_id}").status_code == 404  # not an audit

    ctx = WorkerContext(WorkerSettings(home=settings.home, device="cpu"))
    assert run_job(ctx, job_id) == "succeeded"
    job = client.get(f"/v1/certifications/{job_id}").json()
    assert job["status"] == "succeeded" and job["links"]["report"].endswith("/report")
    report = client.get(f"/v1/certifications/{job_id}/report").json()
    CertificationReport.model_validate(report)  # what openapi.json declares
    assert report["kind"] == "certification" and report["model"]["id"] == model_id
    assert job["summary"]["certified_accuracy"] == report["certified_accuracy"]
    ex = report["examples"]
    assert len(ex["radius"]) == 10 and max(ex["radius"]) <= radius(0.001 ** (1 / 500), 0.25)
    attacked = report["attack"]["results"][0]
    assert attacked["radius"] == 0.25 and attacked["accuracy"] >= attacked["certified_accuracy"]
    assert report["cost"]["forward_passes"] == 10 * (20 + 500 + 2 * 4 * 4 + 100)
    page = client.get(f"/v1/certifications/{job_id}/report.html")
    assert page.headers["content-type"].startswith("text/html")
    assert page.text.count("data:image/svg+xml") == 1 and "L2 radius" in page.text
    listed = client.get("/v1/certifications", params={"model_id": model_id}).json()["items"]
    assert [j["id"] for j in listed] == [job_id]


def test_callbacks_of_every_job_kind_are_signed_retried_with_backoff_and_recorded(
        tmp_path, weights):
    """Audits, trainings and certifications take a `callback_url`. Each delivery is a
    Standard Webhooks message the package verifies with the tenant's secret (the configured
    one for the default tenant, a generated one for another tenant, which the first's does
    not verify). A receiver answering 503 gets the same message again after the backoff, and
    every attempt is listed at …/deliveries; one that never answers 2xx ends `failed`."""
    import time

    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    from service.callbacks import CallbackSender
    from tests.service_processes import Receiver

    def drain(sender):  # until the deliveries started have ended
        deadline = time.monotonic() + 30
        while sender.in_flight and time.monotonic() < deadline:
            time.sleep(0.05)

    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # 24 bytes, base64
    settings = Settings(home=tmp_path, reconcile_seconds=3600, admin_key=ADMIN_KEY,
                        callback_hosts="127.0.0.1", webhook_secret=secret,
                        callback_attempts=3, callback_backoff_seconds=0.5)
    with TestClient(create_app(settings), headers=AUTH) as client, \
            Receiver(statuses=[503]) as flaky, Receiver() as steady, \
            Receiver(statuses=[500, 500, 500]) as broken:
        assert client.get("/v1/webhooks/secret").json() == {
            "secret": secret, "tenant": "default", "source": "environment"}
        model_id = upload(client, weights).json()["id"]
        hook = "http://127.0.0.1:{}/hook?token=s3cret"
        jobs = {
            "audits": {"model_id": model_id, **AUDIT, "callback_url": hook.format(flaky.port)},
            "trainings": {"architecture": "madry_mnist", "dataset": {"name": "digits"},
                          "method": "standard", "epochs": 1,
                          "callback_url": hook.format(steady.port)},
            "certifications": {"model_id": model_id, "dataset": {"name": "digits", "n": 5},
                               "sigma": 0.25, "n": 100, "attack": None,
                               "callback_url": hook.format(broken.port)}}
        assert_problem(client.post("/v1/audits", json={**jobs["audits"],
                                                       "callback_url": "http://10.0.0.7/h"}),
                       422, "not among the allowed callback hosts")
        ids = {}
        for segment, body in jobs.items():
            r = client.post(f"/v1/{segment}", json=body)
            assert r.status_code == 202, r.text
            ids[segment] = r.json()["id"]
            # The URL (and its token) stays out of the stored spec, and so out of the report.
            assert "callback_url" not in r.json()["spec"]
            assert r.json()["callback"] == {"url": body["callback_url"], "status": None,
                                            "attempts": 0}
            client.post(f"/v1/{segment}/{ids[segment]}/cancel")  # no worker: ends at once
        sender = CallbackSender(client.app.state.gw)
        assert sender.dispatch() == 3
        drain(sender)
        audit = client.get(f"/v1/audits/{ids['audits']}").json()["callback"]
        assert audit["status"] is None and audit["attempts"] == 1 and audit["next_attempt_at"]
        assert sender.dispatch() == 0  # not due before the backoff
        (training,) = steady.received
        body = Webhook(secret).verify(training[2], steady.headers[0])
        assert body["type"] == "training.cancelled"
        assert body["data"]["id"] == ids["trainings"] and training[0] == "/hook?token=s3cret"
        # Attempts 2 (and 3 for the broken receiver), each after its backoff.
        for _ in range(2):
            time.sleep(2.2)
            sender.dispatch()
            drain(sender)
        shown = {s: client.get(f"/v1/{s}/{i}").json()["callback"] for s, i in ids.items()}
        assert shown["audits"] == {"url": jobs["audits"]["callback_url"],
                                   "status": "delivered", "attempts": 2}
        assert shown["trainings"]["status"] == "delivered"
        assert shown["certifications"]["status"] == "failed"
        assert shown["certifications"]["attempts"] == 3
        first, second = flaky.headers
        assert first["webhook-id"] == second["webhook-id"] == f"{ids['audits']}.cancelled"
        for (_, _, raw), headers in zip(flaky.received, flaky.headers):
            assert Webhook(secret).verify(raw, headers)["data"]["id"] == ids["audits"]
        log = client.get(f"/v1/audits/{ids['audits']}/deliveries").json()
        assert [(d["attempt"], d["outcome"], d["detail"]) for d in log["items"]] == [
            (1, "retrying", "HTTP 503"), (2, "delivered", "HTTP 204")]
        assert log["status"] == "delivered"
        log = client.get(f"/v1/certifications/{ids['certifications']}/deliveries").json()
        assert [(d["outcome"], d["detail"]) for d in log["items"]] == [
            ("retrying", "HTTP 500"), ("retrying", "HTTP 500"), ("failed", "HTTP 500")]
        # Another tenant: its own generated secret; the default tenant's does not verify it.
        made = client.post("/v1/keys", json={"tenant": "team-b", "scopes": ["read", "admin"]})
        team_b = {"Authorization": f"Bearer {made.json()['key']}"}
        other = client.get("/v1/webhooks/secret", headers=team_b).json()
        assert other["source"] == "generated" and other["secret"].startswith("whsec_")
        assert other["secret"] != secret
        assert client.get("/v1/webhooks/secret", headers=team_b).json() == other  # kept
        from service.webhooks import signature_headers, tenant_secret

        theirs = signature_headers(tenant_secret(client.app.state.gw.db, "team-b"), "m1", "{}",
                                   utcnow())
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify("{}", theirs)
        assert Webhook(other["secret"]).verify("{}", theirs) == {}


def test_a_dry_run_answers_the_cost_and_an_estimate_from_measured_throughput(
        client, weights, settings):
    """`?dry_run=true` runs every check of a submission and answers its cost instead of
    queueing it; once a job of the kind has run here, the estimate is its passes at the
    measured passes per second, and Retry-After follows the estimated time left."""
    from service.budget import audit_passes
    from workers.context import WorkerContext
    from workers.running import run_job

    model_id = upload(client, weights).json()["id"]
    body = {"model_id": model_id, **AUDIT, "attacks": [{"name": "pgd", "steps": 10}]}
    passes = audit_passes(parse_audit(body))
    r = client.post("/v1/audits", json=body, params={"dry_run": "true"})
    assert r.status_code == 200, r.text
    assert r.json() == {"kind": "audit", "passes": passes, "limit": 10**10,
                        "budget_left": 10**10 - passes, "passes_per_second": None,
                        "measured_jobs": 0, "estimated_seconds": None}
    assert client.get("/v1/audits").json()["items"] == []  # nothing stored or queued
    # A dry run is refused where the submission would be.
    assert_problem(client.post("/v1/audits", params={"dry_run": "true"}, json={
        **body, "dataset": {"name": "mnist", "split": "train"},
        "attacks": [{"name": "pgd", "steps": 10**4, "restarts": 100}]}), 422, "budget")
    assert_problem(client.post("/v1/audits", params={"dry_run": "true"},
                               json={**body, "model_id": "mdl_nope"}), 422, "model_id")
    r = client.post("/v1/audits", json=body)
    assert r.status_code == 202 and r.headers["Retry-After"] == "2"  # nothing measured yet
    ctx = WorkerContext(WorkerSettings(home=settings.home, device="cpu"))
    assert run_job(ctx, r.json()["id"]) == "succeeded"
    ran = client.get(f"/v1/audits/{r.json()['id']}").json()
    rate = passes / ran["seconds"]
    dry = client.post("/v1/audits", json={**body, "dataset": {"name": "digits", "n": 200}},
                      params={"dry_run": "true"}).json()
    assert dry["measured_jobs"] == 1 and dry["passes_per_second"] == pytest.approx(rate)
    assert dry["estimated_seconds"] == pytest.approx(10 * passes / rate)
    queued = client.post("/v1/audits", json={**body, "dataset": {"name": "digits", "n": 200}})
    assert queued.headers["Retry-After"] == str(max(1, min(30, round(10 * passes / rate))))
    # The worker's own metrics: the job it ran, its run time and its throughput.
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    from workers.metrics import serve_metrics

    server = serve_metrics(0, client.app.state.gw.db)
    try:
        text = httpx.get(f"http://127.0.0.1:{server.server_port}/metrics").text
    finally:
        server.shutdown()
    samples = {(s.name, s.labels.get("kind"), s.labels.get("status")): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("robustness_worker_jobs", "audit", "succeeded")] == 1
    assert samples[("robustness_worker_job_seconds", "audit", "succeeded")] == \
        pytest.approx(ran["seconds"])
    assert samples[("robustness_worker_passes_per_second", "audit", None)] == \
        pytest.approx(rate)


def parse_audit(body: dict):
    from robustness.spec import parse_audit_spec

    return parse_audit_spec(body)


def test_deleting_a_job_removes_what_only_it_used_and_retention_expires_adversarial_sets(
        client, weights, settings):
    """Two identical audits share one adversarial set (content-addressed) and have a report
    each. Deleting one removes its report and keeps the shared set; retention then expires
    the other's set (410) and keeps its report; `/metrics` counts each tenant's bytes."""
    from service.retention import expire_adversarial_sets
    from workers.context import WorkerContext
    from workers.running import run_job

    model = upload(client, weights).json()
    ids = [client.post("/v1/audits", json={"model_id": model["id"], **AUDIT}).json()["id"]
           for _ in range(2)]
    assert_problem(client.delete(f"/v1/audits/{ids[0]}"), 409, "cancel it first")
    ctx = WorkerContext(WorkerSettings(home=settings.home, device="cpu"))
    assert [run_job(ctx, i) for i in ids] == ["succeeded"] * 2
    a, b = (transitions.get_job(client.app.state.gw.db, i) for i in ids)
    assert a.adversarial_sha256 == b.adversarial_sha256 and a.report_sha256 != b.report_sha256
    path = client.app.state.gw.store.path
    sizes = [path(s).stat().st_size for s in (model["sha256"], a.report_sha256,
                                               b.report_sha256, a.adversarial_sha256)]
    scraped = [line.split()[-1] for line in client.get("/metrics").text.splitlines()
               if line.startswith('robustness_tenant_disk_bytes{tenant="default"}')]
    assert [float(v) for v in scraped] == [sum(sizes)]
    assert client.delete(f"/v1/audits/{a.id}").status_code == 204
    assert_problem(client.get(f"/v1/audits/{a.id}"), 404)
    assert not path(a.report_sha256).exists() and path(b.report_sha256).exists()
    assert path(a.adversarial_sha256).exists()  # b still uses it
    adversarial = f"/v1/audits/{b.id}/adversarial"
    assert client.get(adversarial, params={"attack": "fgsm", "epsilon": 0.1}).status_code == 200
    # Retention: nothing is young enough to keep two days on with a one-day policy.
    gw = client.app.state.gw
    assert expire_adversarial_sets(gw) == []  # unset: kept
    gw.settings.retention_days = 1
    assert expire_adversarial_sets(gw, now=utcnow()) == []  # finished just now
    assert expire_adversarial_sets(gw, now=utcnow() + timedelta(days=2)) == [b.id]
    assert not path(b.adversarial_sha256).exists()
    assert_problem(client.get(adversarial, params={"attack": "fgsm", "epsilon": 0.1}), 410,
                   "expired", "ROBUSTNESS_RETENTION_DAYS")
    assert client.get(f"/v1/audits/{b.id}/report").status_code == 200
    # Trainings (and certifications) alike; the model file stays with its record.
    training = client.post("/v1/trainings", json={
        "architecture": "madry_mnist", "dataset": {"name": "digits"}, "method": "standard",
        "epochs": 1}).json()["id"]
    client.post(f"/v1/trainings/{training}/cancel")
    assert client.delete(f"/v1/trainings/{training}").status_code == 204
    assert client.delete(f"/v1/audits/{b.id}").status_code == 204
    assert not path(b.report_sha256).exists() and path(model["sha256"]).exists()


def test_audits_compare_gate_on_a_baseline_and_scheduled_runs_flag_regressions(
        client, weights, settings):
    """GET /v1/audits/{a}/compare/{b}; a gate rule whose bound is a baseline audit's figure,
    resolved at submission; and a scheduled audit compared with the schedule's previous
    run, its regression in the job's summary (and so in its callback)."""
    from service.schedules import fire_due
    from workers.context import WorkerContext
    from workers.running import run_job

    ctx = WorkerContext(WorkerSettings(home=settings.home, device="cpu"))
    model_id = upload(client, weights).json()["id"]
    data = {"name": "digits", "n": 120}
    fgsm = {"model_id": model_id, "dataset": data, "epsilons": [0.0, 0.15],
            "attacks": [{"name": "fgsm", "label": "atk"}]}
    pgd = {**fgsm, "attacks": [{"name": "pgd", "steps": 20, "restarts": 2, "label": "atk"}]}

    def run(body) -> str:
        job_id = client.post("/v1/audits", json=body).json()["id"]
        assert run_job(ctx, job_id) == "succeeded"
        return job_id

    a, b = run(fgsm), run(pgd)
    out = client.get(f"/v1/audits/{a}/compare/{b}").json()
    assert out["a"] == a and out["verdict"] == "regressed"
    row = next(r for r in out["results"] if r["epsilon"] == 0.15)
    assert row["delta"] == pytest.approx((len(row["fixed_in_b"]) - len(row["broken_in_b"]))
                                         / 120) and row["delta"] < -0.05
    assert client.get(f"/v1/audits/{a}/compare/{b}",
                      params={"tolerance": 1}).json()["verdict"] == "unchanged"
    other = run({**fgsm, "dataset": {**data, "offset": 3}})
    assert_problem(client.get(f"/v1/audits/{a}/compare/{other}"), 422, "not on the same")
    # A baseline rule: B's bound is A's figure, fixed in the stored spec at submission.
    rule = {"metric": "accuracy", "attack": "atk", "epsilon": 0.15, "op": ">=",
            "baseline": a, "tolerance": 0.01}
    gated = client.post("/v1/audits", json={**pgd, "gate": [rule]}).json()
    stored = gated["spec"]["gate"][0]
    assert stored["baseline_value"] == row["a"] and stored["baseline"] == a
    assert run_job(ctx, gated["id"]) == "succeeded"
    job = client.get(f"/v1/audits/{gated['id']}").json()
    assert job["summary"]["gate"]["passed"] is False
    queued = client.post("/v1/audits", json=fgsm).json()["id"]
    for bad, why in (("aud_nope", "is not an audit of yours"), (queued, "is queued")):
        assert_problem(client.post("/v1/audits", json={
            **pgd, "gate": [{**rule, "baseline": bad}]}), 422, "baseline", why)
    # A schedule: its second run is compared with its first.
    schedule = client.post("/v1/schedules", json={"cron": "0 3 * * *", "audit": fgsm,
                                                  "tolerance": 0.02}).json()
    assert schedule["tolerance"] == 0.02
    from datetime import datetime

    due = datetime.fromisoformat(schedule["next_run_at"])
    (first,) = fire_due(client.app.state.gw, now=due)
    assert run_job(ctx, first) == "succeeded"
    assert client.get(f"/v1/audits/{first}").json()["summary"].get("regression") is None
    # The schedule's audit is made stronger between runs (same label): the next run regresses.
    from store.db import ScheduleRecord

    with client.app.state.gw.db.session.begin() as s:
        s.execute(update(ScheduleRecord).where(ScheduleRecord.id == schedule["id"])
                  .values(audit=pgd))
    nxt = datetime.fromisoformat(client.get(f"/v1/schedules/{schedule['id']}")
                                 .json()["next_run_at"])
    (second,) = fire_due(client.app.state.gw, now=nxt)
    assert run_job(ctx, second) == "succeeded"
    regression = client.get(f"/v1/audits/{second}").json()["summary"]["regression"]
    assert regression["previous_audit_id"] == first and regression["regressed"] is True
    assert regression["tolerance"] == 0.02
    assert [r["epsilon"] for r in regression["regressions"]] == [0.15]


def test_a_list_is_walked_by_its_next_cursor(client, weights):
    ids = [upload(client, weights).json()["id"] for _ in range(3)]
    first = client.get("/v1/models", params={"limit": 2}).json()
    assert first["total"] == 3 and first["offset"] == 0 and len(first["items"]) == 2
    second = client.get("/v1/models", params={"limit": 2,
                                              "cursor": first["next_cursor"]}).json()
    assert second["offset"] == 2 and second["next_cursor"] is None
    assert [m["id"] for m in first["items"] + second["items"]] == ids[::-1]  # newest first
    assert client.get("/v1/models", params={"limit": 2, "offset": 2}).json() == second
    assert_problem(client.get("/v1/models", params={"cursor": "nope"}), 422, "cursor")
    import base64

    forged = base64.urlsafe_b64encode(b'{"p": 100000000000000000000}').decode().rstrip("=")
    assert_problem(client.get("/v1/models", params={"cursor": forged}), 422, "cursor")
    jobs = client.get("/v1/audits", params={"limit": 5}).json()
    assert jobs == {"items": [], "total": 0, "limit": 5, "offset": 0, "next_cursor": None}
