"""A bounded load test on loopback: C concurrent clients each submit a small audit, poll it
to completion, and start again, for D seconds; then every submitted job must end `succeeded`.

    .venv/bin/python bench/load.py [--clients 100] [--seconds 60] [--out out/load.json]
    .venv/bin/python bench/load.py --url http://host:8000 --key KEY   # a running service

Without --url it starts `robustness serve` (embedded: SQLite records and broker, one child
worker) in a temporary ROBUSTNESS_HOME. Reports failed requests (transport errors, 5xx, or any
unexpected status), lost jobs, and p50/p99 latency per request kind.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

AUDIT = {"dataset": {"name": "digits", "n": 10}, "attacks": [{"name": "fgsm"}],
         "epsilons": [0.1]}


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def timed(request, what: str, expected: int, times: list, log: dict):
    """One request: its latency into `times`, or a failure into the log (then None)."""
    t0 = time.perf_counter()
    try:
        r = await request
    except httpx.HTTPError as exc:
        log["failures"].append(f"{what} {type(exc).__name__}")
        return None
    times.append(time.perf_counter() - t0)
    if r.status_code != expected:
        log["failures"].append(f"{what} {r.status_code} {r.text[:200]}")
        return None
    return r


async def client_loop(http: httpx.AsyncClient, model_id: str, stop_at: float, log: dict):
    while time.monotonic() < stop_at:
        r = await timed(http.post("/v1/audits", json={"model_id": model_id, **AUDIT},
                                  headers={"Idempotency-Key": uuid.uuid4().hex}),
                        "POST", 202, log["post"], log)
        if r is None:
            continue
        job_id = r.json()["id"]
        log["submitted"].append(job_id)
        while True:
            await asyncio.sleep(0.25)
            g = await timed(http.get(f"/v1/audits/{job_id}"), "GET", 200, log["get"], log)
            if g is not None and g.json()["status"] in ("succeeded", "failed", "cancelled"):
                break


async def run(url: str, key: str, model_id: str, clients: int, seconds: float) -> dict:
    log = {"post": [], "get": [], "failures": [], "submitted": []}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"},
                                 timeout=60, limits=limits) as http:
        started = time.monotonic()
        await asyncio.gather(*(client_loop(http, model_id, started + seconds, log)
                               for _ in range(clients)))
        elapsed = time.monotonic() - started
        states = {}
        for job_id in log["submitted"]:
            states[job_id] = (await http.get(f"/v1/audits/{job_id}")).json()["status"]
    lost = [j for j, s in states.items() if s != "succeeded"]
    ms = lambda v: round(1000 * v, 1)
    return {
        "clients": clients, "seconds": round(elapsed, 1),
        "requests": len(log["post"]) + len(log["get"]) + len(log["failures"]),
        "failed_requests": len(log["failures"]), "failures": log["failures"][:20],
        "jobs_submitted": len(log["submitted"]), "jobs_lost_or_not_succeeded": len(lost),
        "jobs_per_second": round(len(log["submitted"]) / elapsed, 2),
        "post_ms": {"p50": ms(_percentile(log["post"], 0.5)),
                    "p99": ms(_percentile(log["post"], 0.99)),
                    "mean": ms(statistics.fmean(log["post"])) if log["post"] else None},
        "get_ms": {"p50": ms(_percentile(log["get"], 0.5)),
                   "p99": ms(_percentile(log["get"], 0.99)),
                   "mean": ms(statistics.fmean(log["get"])) if log["get"] else None},
    }


def start_service(home: Path) -> tuple[subprocess.Popen, str, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    key = uuid.uuid4().hex
    env = {**os.environ, "ROBUSTNESS_HOME": str(home), "ROBUSTNESS_ADMIN_KEY": key,
           "ROBUSTNESS_DEVICE": "cpu"}
    for var in ("DATABASE_URL", "REDIS_URL"):
        env.pop(var, None)
    proc = subprocess.Popen([sys.executable, "-m", "robustness", "serve", "--port", str(port)],
                            env=env, stdout=open(home / "serve.log", "ab"),  # noqa: SIM115
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                return proc, url, key
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError((home / "serve.log").read_text()[-3000:])


def register_demo_model(url: str, key: str) -> str:
    from service.demo import train_demo

    weights, metadata, _ = train_demo(None)
    with open(weights, "rb") as f:
        r = httpx.post(f"{url}/v1/models", headers={"Authorization": f"Bearer {key}"},
                       files={"file": (weights.name, f)},
                       data={"metadata": json.dumps(metadata)}, timeout=60)
    r.raise_for_status()
    return r.json()["id"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--url")
    parser.add_argument("--key")
    parser.add_argument("--out", default="out/load.json")
    args = parser.parse_args()
    proc = None
    with tempfile.TemporaryDirectory(prefix="robustness-load-") as tmp:
        url, key = args.url, args.key
        if url is None:
            proc, url, key = start_service(Path(tmp))
        try:
            model_id = register_demo_model(url, key)
            result = asyncio.run(run(url, key, model_id, args.clients, args.seconds))
        finally:
            if proc is not None:
                os.killpg(proc.pid, 15)
                proc.wait(timeout=60)
    result["service"] = "embedded (robustness serve)" if args.url is None else args.url
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0 if result["failed_requests"] == 0 and result["jobs_lost_or_not_succeeded"] == 0 \
        else 1


if __name__ == "__main__":
    sys.exit(main())
