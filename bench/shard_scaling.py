"""One sharded audit through the split deployment (gateway, Redis, PostgreSQL) with 1, 2 and 4
worker processes, one thread each: wall time from submission to the stored report, and the
same audit unsharded on one worker for the overhead of shards (issue 17's throughput).

    .venv/bin/python bench/shard_scaling.py --data-root ../shared/data [--n 1000] \\
        [--workers 1,2,4] [--shard-examples 250] [--every-eps]

Needs Redis (REDIS_URL, default redis://127.0.0.1:6379/12, flushed) and PostgreSQL
(ROBUSTNESS_BENCH_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/test: a fresh
database is made per run and dropped). The model: the FGSM-AT `wong_mnist` of
bench/report_pages.py (trained into out/report-pages/ if missing). Figures in
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from report_pages import FGSM_AT, trained

KEY = "bench-admin-key"
GRID = [round(0.05 * i, 2) for i in range(9)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_database(admin_url: str) -> tuple[str, str]:
    import psycopg

    name = f"robustness_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return name, f"{admin_url.rsplit('/', 1)[0]}/{name}"


def drop_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def one_run(args, workers: int, shard_examples: int, weights: Path, meta: dict) -> dict:
    import redis

    redis.Redis.from_url(args.redis_url).flushdb()
    name, database_url = fresh_database(args.postgres_url)
    home = Path(tempfile.mkdtemp(prefix="shard-scaling-"))
    port = free_port()
    env = {**os.environ, "ROBUSTNESS_HOME": str(home), "ROBUSTNESS_ADMIN_KEY": KEY,
           "REDIS_URL": args.redis_url, "DATABASE_URL": database_url,
           "ROBUSTNESS_DATA_ROOT": str(Path(args.data_root).resolve()),
           "ROBUSTNESS_SHARD_EXAMPLES": str(shard_examples), "ROBUSTNESS_DEVICE": "cpu",
           "OMP_NUM_THREADS": "1", "ROBUSTNESS_LOG_FORMAT": "text"}
    procs = [subprocess.Popen([sys.executable, "-m", "robustness", "serve", "--no-worker",
                               "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)]
    procs += [subprocess.Popen([sys.executable, "-m", "robustness", "worker", "--concurrency",
                                "1"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
              for _ in range(workers)]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}",
                          headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as c:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if c.get("/v1/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the gateway did not come up")
                time.sleep(0.3)
            with open(weights, "rb") as f:
                model_id = c.post("/v1/models", files={"file": ("m.safetensors", f)},
                                  data={"metadata": json.dumps(meta)}).json()["id"]
            time.sleep(15)  # the workers' sandboxes import torch before the clock starts
            spec = {"model_id": model_id, "dataset": {"name": "mnist", "split": "test",
                                                      "n": args.n},
                    "attacks": [{"name": "fgsm"}, {"name": "pgd", "steps": 40,
                                                   "step_size": 0.01,
                                                   "search": not args.every_eps}],
                    "epsilons": GRID, "batch_size": args.batch, "seed": 0}
            started = time.perf_counter()
            job_id = c.post("/v1/audits", json=spec).json()["id"]
            while True:
                body = c.get(f"/v1/audits/{job_id}").json()
                if body["status"] in ("succeeded", "failed", "cancelled"):
                    break
                time.sleep(0.2)
            seconds = time.perf_counter() - started
            if body["status"] != "succeeded":
                raise RuntimeError(f"audit {body['status']}: {body.get('error')}")
            report = c.get(f"/v1/audits/{job_id}/report").json()
            return {"workers": workers, "shard_examples": shard_examples, "seconds": seconds,
                    "shards": report["provenance"].get("shards"),
                    "accuracy": [r["accuracy"] for r in report["results"]]}
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        drop_database(args.postgres_url, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=125)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--shard-examples", type=int, default=250)
    parser.add_argument("--every-eps", action="store_true",
                        help="PGD attacks every ε (search off): three times the attack work")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL",
                                                              "redis://127.0.0.1:6379/12"))
    parser.add_argument("--postgres-url", default=os.environ.get(
        "ROBUSTNESS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--out", default="out/shard-scaling.json")
    args = parser.parse_args()
    weights = trained(FGSM_AT, Path("out/report-pages/fgsm-at"), args.data_root)
    meta = json.loads(weights.with_suffix(".json").read_text())["metadata"]
    rows = [one_run(args, 1, 0, weights, meta)]
    print(json.dumps(rows[-1]), flush=True)
    for k in map(int, args.workers.split(",")):
        rows.append(one_run(args, k, args.shard_examples, weights, meta))
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["seconds"]
    for row in rows:
        row["speedup"] = base / row["seconds"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))
    for row in rows:
        print(f"{row['workers']} worker(s), shards {row['shards']}: {row['seconds']:.1f} s, "
              f"{row['speedup']:.2f}× the unsharded audit on one worker")


if __name__ == "__main__":
    main()
