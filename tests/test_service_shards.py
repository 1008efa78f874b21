"""One audit over two workers, on the machine's Redis and PostgreSQL: its shards run on both,
the merged report is the one the library gives unsharded, a worker killed mid-shard costs
that shard (claimed again after its lease), not the audit, and a coordinator killed while it
merges costs no shard at all."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest
import torch
from service_processes import (
    AUTH,
    finished,
    register_model,
    split_deployment,
    wait_for,
)

from robustness.evaluation import run_sweep
from robustness.spec import parse_audit_spec

N = 240
AUDIT = {"dataset": {"name": "digits", "split": "test", "n": N}, "batch_size": 30,
         "attacks": [{"name": "fgsm"}, {"name": "pgd", "steps": 10}],
         "epsilons": [0.0, 0.05, 0.1, 0.2], "seed": 0}


def _same_audit(report: dict) -> str:
    keys = ("clean", "results", "examples", "checks", "per_class", "worst_case")
    return json.dumps({k: report.get(k) for k in keys}, sort_keys=True)


@pytest.fixture
def two_workers(tmp_path, digits_model):
    with split_deployment(tmp_path, digits_model.net,
                          {"ROBUSTNESS_SHARD_EXAMPLES": "60"}) as (svc, _, weights):
        svc.start(worker=False)
        for name in ("worker-a", "worker-b"):
            svc.start_process(name, ["worker", "--concurrency", "1"])
        yield svc, weights


def _shards_run_by(svc, name: str) -> list[int]:
    log = svc.logs[name].read_text(errors="replace")
    return [int(i) for i in re.findall(r"shard (\d+): succeeded", log)]


@pytest.fixture
def unsharded(digits_model, digits) -> dict:
    """The library's report of the audit, in one process."""
    from types import SimpleNamespace

    _, test = digits
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers run (OMP_NUM_THREADS=1): the same float sums
    data = SimpleNamespace(x=test.x[:N], y=test.y[:N], indices=test.indices[:N],
                           description={"name": "digits", "split": "test", "n": N})
    try:
        return run_sweep(digits_model, data, parse_audit_spec(AUDIT), device="cpu").report
    finally:
        torch.set_num_threads(threads)


def _database(svc):
    from store.db import Database

    return Database(svc.env["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://"))


def test_one_audit_runs_on_two_workers_and_survives_losing_one(two_workers, unsharded):
    svc, weights = two_workers
    with httpx.Client(base_url=svc.url, headers=AUTH, timeout=30) as client:
        model_id = register_model(client, weights)
        job_id = client.post("/v1/audits", json={"model_id": model_id, **AUDIT}).json()["id"]
        body = wait_for(client, f"/v1/audits/{job_id}", finished, timeout=300)
        assert body["status"] == "succeeded", (body["error"], svc.tail())
        report = client.get(f"/v1/audits/{job_id}/report").json()
        assert report["provenance"]["shards"] == 4
        assert _same_audit(report) == _same_audit(unsharded)
        # The worker that did not coordinate ran shards of its own (the coordinator's run in
        # its sandbox and are not logged per shard).
        assert _shards_run_by(svc, "worker-a") or _shards_run_by(svc, "worker-b")

        # Again, and one worker dies while it runs a shard: the audit still succeeds, with
        # the same report, its coordinator claiming the dead worker's shard after the lease.
        job_id = client.post("/v1/audits", json={"model_id": model_id, **AUDIT}).json()["id"]
        victim = _worker_logging(svc, rf"audit {job_id} shard \d+: started", timeout=120)
        _killed_yet_the_same_audit(svc, client, victim, job_id, unsharded)
    # The database says what happened: the dead worker's shard ran twice, the others once.
    from store import shards

    db = _database(svc)
    try:
        attempts = sorted(r.attempts for r in shards.shards(db, job_id))
    finally:
        db.dispose()
    assert attempts == [1, 1, 1, 2], attempts


def test_a_coordinator_lost_while_it_merges_costs_no_shard(two_workers, unsharded):
    """The worker coordinating an audit dies once every shard is done, before its report is
    stored: the audit is redelivered after its lease, and the other worker merges the shards
    the database says are finished, running none of them again."""
    import os
    import signal

    from store import shards, transitions

    svc, weights = two_workers
    db = _database(svc)
    try:
        with httpx.Client(base_url=svc.url, headers=AUTH, timeout=30) as client:
            model_id = register_model(client, weights)
            for _ in range(3):
                job_id = client.post("/v1/audits",
                                     json={"model_id": model_id, **AUDIT}).json()["id"]
                coordinator = _worker_logging(svc, rf"audit {job_id}: started \(attempt 1\)")
                deadline = time.monotonic() + 120
                while not _all_succeeded(shards.shards(db, job_id)):
                    assert time.monotonic() < deadline, svc.tail()
                    time.sleep(0.02)
                # Freeze it where it is: merging, unless it was quicker than this test.
                os.killpg(svc.procs[coordinator].pid, signal.SIGSTOP)
                if transitions.get_job(db, job_id).status == "running":
                    break
                os.killpg(svc.procs[coordinator].pid, signal.SIGCONT)
                wait_for(client, f"/v1/audits/{job_id}", finished, timeout=60)
            else:
                pytest.fail("the coordinator stored its report before it could be stopped, "
                            "three times")
            report = _killed_yet_the_same_audit(svc, client, coordinator, job_id, unsharded)
            assert report["provenance"]["shards"] == 4
        assert transitions.get_job(db, job_id).attempts == 2
        assert [r.attempts for r in shards.shards(db, job_id)] == [1, 1, 1, 1]
    finally:
        db.dispose()


def _killed_yet_the_same_audit(svc, client, worker: str, job_id: str, unsharded) -> dict:
    """Kill `worker` (its process group: Celery, sandbox and all); the audit must still
    succeed with the unsharded report, which is returned."""
    import os
    import signal

    os.killpg(svc.procs[worker].pid, signal.SIGKILL)
    svc.procs.pop(worker).wait()
    body = wait_for(client, f"/v1/audits/{job_id}", finished, timeout=300)
    assert body["status"] == "succeeded", (body["error"], svc.tail())
    report = client.get(f"/v1/audits/{job_id}/report").json()
    assert _same_audit(report) == _same_audit(unsharded)
    return report


def _worker_logging(svc, pattern: str, timeout: float = 60) -> str:
    """The first worker whose log matches `pattern` (e.g. the one that took a job or started
    a shard), waiting for it up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name in ("worker-a", "worker-b"):
            if re.search(pattern, svc.logs[name].read_text(errors="replace")):
                return name
        time.sleep(0.05)
    raise AssertionError(f"no worker logged {pattern!r}: {svc.tail()}")


def _all_succeeded(states) -> bool:
    return bool(states) and all(r.status == "succeeded" for r in states)
