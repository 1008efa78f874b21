"""The service end to end over HTTP, with real processes: embedded (`robustness serve`:
gateway, child Celery worker, SQLite broker and records) and split (`robustness serve
--no-worker` + `robustness worker` on the machine's Redis and PostgreSQL).

Upload a model trained here, audit it and check the report against a direct library call on
the same examples, re-check the exported adversarial examples, train a model, and cancel a
running job.
"""

from __future__ import annotations

import html
import io
import json
import re

import httpx
import numpy as np
import pytest
import torch
from safetensors.torch import load as load_safetensors
from service_processes import (
    AUTH,
    METADATA,
    PostgresDatabase,
    Service,
    finished,
    fresh_redis_url,
    wait_for,
)

from robustness.audit import audit_model_file
from robustness.models import ModelMetadata, load_model, save_state_dict
from robustness.spec import parse_audit_spec

AUDIT = {"dataset": {"name": "digits", "split": "test", "n": 120, "offset": 30},
         "attacks": [{"name": "fgsm"}, {"name": "pgd", "steps": 10, "restarts": 2},
                     {"name": "cw", "steps": 30, "binary_search_steps": 3,
                      "epsilons": [0.0, 0.5, 1.0]}],
         "epsilons": [0.0, 0.1, 0.2], "top_k": 3, "seed": 0, "batch_size": 50}


@pytest.fixture(scope="module", params=["embedded", "redis+postgresql"])
def service(request, tmp_path_factory):
    home = tmp_path_factory.mktemp(f"service-{request.param.replace('+', '-')}")
    cleanup = []
    if request.param == "embedded":
        svc = Service(home, {}, split=False)
    else:
        pg = PostgresDatabase()
        cleanup.append(pg.drop)
        svc = Service(home, {"REDIS_URL": fresh_redis_url(), "DATABASE_URL": pg.url},
                      split=True)
    try:
        svc.start()
        yield svc
    finally:
        svc.stop()
        for step in cleanup:
            step()


@pytest.fixture(scope="module")
def model_file(digits_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "digits.safetensors"
    save_state_dict(digits_model.net, path)
    return path


@pytest.fixture(scope="module")
def client(service):
    with httpx.Client(base_url=service.url, timeout=30, headers=AUTH) as c:
        yield c


@pytest.fixture(scope="module")
def model_id(client, model_file):
    with open(model_file, "rb") as f:
        r = client.post("/v1/models", files={"file": ("digits.safetensors", f)},
                        data={"metadata": json.dumps(METADATA)})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["format"] == "safetensors" and len(body["sha256"]) == 64
    return body["id"]


def submit(client, path, spec, service) -> dict:
    r = client.post(path, json=spec)
    assert r.status_code == 202, r.text
    assert r.headers["Location"] == f"{path}/{r.json()['id']}"
    assert int(r.headers["Retry-After"]) > 0
    return r.json()


@pytest.fixture(scope="module")
def audit(client, model_id, service):
    job = submit(client, "/v1/audits", {"model_id": model_id, **AUDIT}, service)
    assert job["status"] in ("queued", "running")
    fractions = []

    def done(body):
        fractions.append(body["progress"]["fraction"])
        return finished(body)

    body = wait_for(client, f"/v1/audits/{job['id']}", done)
    assert body["status"] == "succeeded", (body["error"], service.tail())
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert body["progress"]["completed"] == body["progress"]["total"] > 0
    return body


def test_report_equals_a_direct_library_call(client, audit, model_file):
    report = client.get(f"/v1/audits/{audit['id']}/report").json()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the worker (OMP_NUM_THREADS=1): same kernels, same sums
    try:
        direct = audit_model_file(parse_audit_spec(AUDIT), model_file,
                                  ModelMetadata(**METADATA), device="cpu").report
    finally:
        torch.set_num_threads(threads)
    assert report["examples"]["index"] == direct["examples"]["index"] == list(range(30, 150))
    assert report["clean"]["accuracy"] == pytest.approx(direct["clean"]["accuracy"])
    assert report["clean"]["accuracy"] > 0.9
    ours = {(r["label"], r["epsilon"]): r for r in report["results"]}
    theirs = {(r["label"], r["epsilon"]): r for r in direct["results"]}
    assert ours.keys() == theirs.keys() and len(ours) == 9
    for key, r in ours.items():
        assert r["accuracy"] == theirs[key]["accuracy"], key
    # Robustness falls with ε, and PGD is at least as strong as FGSM.
    assert ours[("pgd", 0.2)]["accuracy"] <= ours[("fgsm", 0.2)]["accuracy"]
    assert ours[("pgd", 0.2)]["accuracy"] < ours[("pgd", 0.0)]["accuracy"]
    for col, other in zip(report["examples"]["adversarial"], direct["examples"]["adversarial"]):
        assert (col["label"], col["epsilon"]) == (other["label"], other["epsilon"])
        assert col["pred"] == other["pred"], (col["label"], col["epsilon"])
        np.testing.assert_allclose(col["confidence"], other["confidence"], rtol=0, atol=1e-5)
        np.testing.assert_allclose(col["l2"], other["l2"], rtol=0, atol=1e-5)
    assert report["model"]["sha256"] == direct["model"]["sha256"]
    # The worker's sandbox measured the audit's memory (robustness.memory).
    assert report["provenance"]["memory"]["rss_peak_bytes"] > 100_000_000
    page = client.get(f"/v1/audits/{audit['id']}/report.html")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert f"Clean accuracy {100 * report['clean']['accuracy']:.1f}%" in page.text


def test_the_report_page_pages_through_the_gallery(client, audit):
    """The served page's gallery is a page of /examples?misclassified=true&breaking=true&
    clean_correct=true&order=confidence, with its clean, adversarial and perturbation images from the stored set."""
    base = f"/v1/audits/{audit['id']}"
    records = client.get(f"{base}/examples", params={
        "misclassified": "true", "breaking": "true", "clean_correct": "true",
        "order": "confidence", "limit": 10000}).json()
    total = records["total"]
    assert total > 8
    confidences = [e["confidence"] for e in records["items"]]
    assert confidences == sorted(confidences, reverse=True)
    seen = []
    url = f"{base}/report.html?gallery_size={-(-total // 3)}"  # three pages
    while url:
        page = client.get(url)
        assert page.status_code == 200, page.text
        found = re.findall(r'alt="clean image of example (\d+),', page.text)
        assert page.text.count("data:image/png") == 3 * len(found) > 0
        seen += [int(i) for i in found]
        after = re.search(r'<a href="([^"]+)">less confident', page.text)
        url = html.unescape(after[1]) if after else None
    assert seen == [e["index"] for e in records["items"]]
    assert f"of {total}" in page.text
    r = client.get(f"{base}/report.html", params={"epsilon": 0.15})
    assert r.status_code == 422 and "0.15" in r.json()["detail"]
    assert r.headers["content-type"] == "application/problem+json"
    # A comparison page, routed apart from the JSON comparison.
    page = client.get(f"{base}/compare/{audit['id']}.html")
    assert page.status_code == 200 and "UNCHANGED" in page.text
    assert client.get(f"{base}/compare/{audit['id']}").json()["verdict"] == "unchanged"


def test_examples_are_filtered_and_paginated(client, audit):
    base = f"/v1/audits/{audit['id']}/examples"
    report = client.get(f"/v1/audits/{audit['id']}/report").json()
    col = next(c for c in report["examples"]["adversarial"]
               if c["label"] == "pgd" and c["epsilon"] == 0.2)
    labels = report["examples"]["label"]
    wrong = [i for i, (p, y) in enumerate(zip(col["pred"], labels)) if p != y]
    confident = [i for i in wrong if col["confidence"][i] >= 0.9]
    assert wrong, "PGD at ε=0.2 should break some digits"
    seen, cursor = [], None
    while True:
        params = {"attack": "pgd", "epsilon": 0.2, "misclassified": "true",
                  "min_confidence": 0.9, "limit": 7}
        if cursor:
            params["cursor"] = cursor
        page = client.get(base, params=params).json()
        assert page["total"] == len(confident)
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [e["index"] for e in seen] == [report["examples"]["index"][i] for i in confident]
    assert all(e["misclassified"] and e["confidence"] >= 0.9 and e["pred"] != e["label"]
               for e in seen)
    r = client.get(base, params={"attack": "deepfool"})
    assert r.status_code == 422 and "deepfool" in r.json()["detail"]
    assert r.headers["content-type"] == "application/problem+json"
    r = client.get(base, params={"cursor": "garbage"})
    assert r.status_code == 422 and "cursor" in r.json()["detail"]


@pytest.mark.parametrize("fmt", ["safetensors", "npz"])
def test_adversarial_export_rechecks(client, audit, model_file, fmt):
    from robustness.data import load_dataset

    r = client.get(f"/v1/audits/{audit['id']}/adversarial",
                   params={"attack": "pgd", "epsilon": 0.2, "format": fmt})
    assert r.status_code == 200, r.text
    if fmt == "npz":
        arrays = np.load(io.BytesIO(r.content))
        t = {k: torch.from_numpy(arrays[k]) for k in arrays.files}
    else:
        t = load_safetensors(r.content)
    spec = parse_audit_spec(AUDIT)
    data = load_dataset(spec.dataset)
    assert t["index"].tolist() == data.indices.tolist()
    x_adv = t["x_adv"]
    assert x_adv.shape == data.x.shape
    assert float((x_adv - data.x).abs().max()) <= 0.2 + 1e-6
    assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
    model = load_model(model_file, ModelMetadata(**METADATA), device="cpu").eval()
    with torch.no_grad():
        probs = torch.softmax(model(x_adv), 1)
    conf, pred = probs.max(1)
    assert torch.equal(pred, t["pred"])
    torch.testing.assert_close(conf, t["confidence"].float(), atol=1e-5, rtol=0)


def test_training_registers_its_model(client, service):
    spec = {"architecture": "madry_mnist", "dataset": {"name": "digits", "n": 600},
            "method": "fgsm", "epsilon": 0.1, "epochs": 2, "batch_size": 64, "seed": 0,
            "validation": {"n": 100, "steps": 3}}
    job = submit(client, "/v1/trainings", spec, service)
    body = wait_for(client, f"/v1/trainings/{job['id']}", finished)
    assert body["status"] == "succeeded", (body["error"], service.tail())
    assert [h["epoch"] for h in body["history"]] == [1, 2]
    assert all(0 <= h["pgd_accuracy"] <= h["clean_accuracy"] for h in body["history"])
    model = client.get(f"/v1/models/{body['model_id']}").json()
    assert model["source_training_id"] == job["id"]
    assert model["metadata"]["architecture"] == "madry_mnist"
    assert model["card"]["training"]["spec"]["method"] == "fgsm"
    # The trained model is immediately auditable.
    audit = submit(client, "/v1/audits", {"model_id": body["model_id"],
                                          "dataset": {"name": "digits", "n": 50},
                                          "attacks": [{"name": "fgsm"}],
                                          "epsilons": [0.0, 0.1]}, service)
    done = wait_for(client, f"/v1/audits/{audit['id']}", finished)
    assert done["status"] == "succeeded", done["error"]
    assert done["summary"]["clean_accuracy"] > 0.5
    # Its report page names the recipe; the training's page plots its history.
    page = client.get(f"/v1/audits/{audit['id']}/report.html").text
    assert "trained by this service: fgsm, ε=0.1" in page and job["id"] in page
    page = client.get(f"/v1/trainings/{job['id']}/report.html")
    assert page.status_code == 200 and page.text.count("<img") == 1
    for h in body["history"]:
        assert f"{100 * h['pgd_accuracy']:.1f}%" in page.text


def test_cancel_a_running_audit(client, model_id, service):
    slow = {"model_id": model_id, "dataset": {"name": "digits", "n": 500},
            "attacks": [{"name": "pgd", "steps": 400, "restarts": 4}],
            "epsilons": [0.05, 0.1, 0.15, 0.2], "batch_size": 25}
    job = submit(client, "/v1/audits", slow, service)
    path = f"/v1/audits/{job['id']}"
    wait_for(client, path, lambda b: b["status"] == "running"
             and b["progress"]["completed"] > 0)
    r = client.post(f"{path}/cancel")
    assert r.status_code == 202 and r.json()["cancel_requested"] is True
    body = wait_for(client, path, finished, timeout=60)
    assert body["status"] == "cancelled" and body["progress"]["fraction"] < 1
    assert client.get(f"{path}/report").status_code == 409
    # The worker carries on with the next job.
    quick = submit(client, "/v1/audits", {"model_id": model_id,
                                          "dataset": {"name": "digits", "n": 20},
                                          "attacks": [{"name": "fgsm"}],
                                          "epsilons": [0.1]}, service)
    assert wait_for(client, f"/v1/audits/{quick['id']}", finished)["status"] == "succeeded"


def test_a_model_that_cannot_load_fails_its_job_with_a_reason(client, service, tmp_path):
    # Valid safetensors with the wrong tensors for the declared architecture.
    from safetensors.torch import save_file

    path = tmp_path / "wrong.safetensors"
    save_file({"fc.weight": torch.zeros(10, 4)}, str(path))
    with open(path, "rb") as f:
        r = client.post("/v1/models", files={"file": ("wrong.safetensors", f)},
                        data={"metadata": json.dumps(METADATA)})
    assert r.status_code == 201
    job = submit(client, "/v1/audits", {"model_id": r.json()["id"], **AUDIT}, service)
    body = wait_for(client, f"/v1/audits/{job['id']}", finished)
    assert body["status"] == "failed"
    assert "madry_mnist" in body["error"] or "missing" in body["error"].lower(), body["error"]
    assert client.get("/v1/health").json()["status"] == "ok"


def test_a_worker_killed_mid_audit_is_redelivered_and_stores_one_report(
        client, model_id, model_file, service):
    spec = {"model_id": model_id, "dataset": {"name": "digits", "n": 200},
            "attacks": [{"name": "pgd", "steps": 100, "restarts": 2}],
            "epsilons": [0.05, 0.1, 0.2], "batch_size": 25}
    job = submit(client, "/v1/audits", spec, service)
    path = f"/v1/audits/{job['id']}"
    wait_for(client, path, lambda b: b["status"] == "running"
             and b["progress"]["completed"] >= 2)
    service.kill_worker()
    if service.split:
        service.start_process("worker-2", ["worker", "--concurrency", "1"])
    # (embedded: `robustness serve` restarts its worker by itself)
    body = wait_for(client, path, finished, timeout=240)
    assert body["status"] == "succeeded", (body["error"], service.tail())
    assert body["attempts"] == 2
    report = client.get(f"{path}/report").json()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        direct = audit_model_file(parse_audit_spec({k: v for k, v in spec.items()
                                                    if k != "model_id"}),
                                  model_file, ModelMetadata(**METADATA), device="cpu").report
    finally:
        torch.set_num_threads(threads)
    assert [r["accuracy"] for r in report["results"]] == \
        [r["accuracy"] for r in direct["results"]]
    # One outcome: exactly one report among the stored artifacts has this job's examples.
    reports = [p for p in (service.home / "artifacts").rglob("*") if p.is_file()
               and p.read_bytes()[:1] == b"{"
               and json.loads(p.read_bytes()).get("spec", {}).get("attacks", [{}])[0]
               .get("steps") == 100]
    assert len(reports) == 1


def test_stopping_robustness_serve_stops_its_worker(tmp_path):
    """SIGTERM to the gateway (docker stop, systemd, Ctrl-C) ends its child worker too."""
    import os
    import re
    import signal
    import time

    svc = Service(tmp_path, {}, split=False).start()
    try:
        log = svc.logs["gateway"].read_text()
        assert "admin API key: from ROBUSTNESS_ADMIN_KEY (sha256:" in log
        worker = int(re.findall(r"child process (\d+)", log)[-1])
        os.kill(worker, 0)  # running
        svc.procs["gateway"].send_signal(signal.SIGTERM)
        svc.procs["gateway"].wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(worker, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"worker {worker} outlived its gateway:\n{svc.tail()}")
    finally:
        svc.stop()
