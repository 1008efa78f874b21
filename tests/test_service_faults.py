"""Faults with real processes on the machine's PostgreSQL: Redis restarted (without
persistence) while jobs are queued, and the gateway killed while a job runs. Nothing stored
is lost and every job completes once."""

from __future__ import annotations

import signal

import httpx
import pytest
from service_processes import (
    AUTH,
    finished,
    register_model,
    split_deployment,
    wait_for,
)

AUDIT = {"dataset": {"name": "digits", "n": 40}, "attacks": [{"name": "pgd", "steps": 5}],
         "epsilons": [0.1]}


@pytest.fixture
def deployment(tmp_path, digits_model):
    with split_deployment(tmp_path, digits_model.net) as deployed:
        yield deployed


def test_redis_restart_with_queued_jobs_loses_none(deployment):
    svc, redis, weights = deployment
    svc.start(worker=False)
    with httpx.Client(base_url=svc.url, headers=AUTH, timeout=30) as client:
        model_id = register_model(client, weights)
        ids = [client.post("/v1/audits", json={"model_id": model_id, **AUDIT,
                                                "seed": i}).json()["id"] for i in range(3)]
        redis.kill()   # every queued message is gone with it
        redis.start()  # empty
        svc.start_process("worker", ["worker", "--concurrency", "1"])
        for job_id in ids:
            body = wait_for(client, f"/v1/audits/{job_id}", finished, timeout=180)
            assert body["status"] == "succeeded", (body["error"], svc.tail())
        listed = client.get("/v1/audits", params={"model_id": model_id}).json()["items"]
        assert sorted(j["id"] for j in listed) == sorted(ids)


def test_gateway_killed_mid_job_loses_nothing(deployment):
    svc, _, weights = deployment
    svc.start()
    with httpx.Client(base_url=svc.url, headers=AUTH, timeout=30) as client:
        model_id = register_model(client, weights)
        slow = {"model_id": model_id, "dataset": {"name": "digits", "n": 200},
                "attacks": [{"name": "pgd", "steps": 100}], "epsilons": [0.05, 0.1, 0.2],
                "batch_size": 25}
        job_id = client.post("/v1/audits", json=slow).json()["id"]
        wait_for(client, f"/v1/audits/{job_id}", lambda b: b["status"] == "running")
        gateway = svc.procs.pop("gateway")
        gateway.send_signal(signal.SIGKILL)
        gateway.wait()
        svc.start_process("gateway", ["serve", "--no-worker", "--port", str(svc.port)])
        svc.wait_healthy()
        body = wait_for(client, f"/v1/audits/{job_id}", finished, timeout=240)
        assert body["status"] == "succeeded" and body["attempts"] == 1, body
        assert client.get(f"/v1/models/{model_id}").status_code == 200
        assert client.get(f"/v1/audits/{job_id}/report").json()["examples"]["index"] == \
            list(range(200))
