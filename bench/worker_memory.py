"""Does a worker grow from job to job? 50 consecutive audits through a real `robustness serve`
(gateway, worker, its warm sandbox process), each report's provenance giving the sandbox's
resident set at the job's start, peak and end (robustness.memory).

    .venv/bin/python bench/worker_memory.py [--jobs 50] [--n 300]

Writes the series to --out (out/worker-memory.json) and prints the growth: the median
resident set at the end of the last 10 jobs against that of jobs 11-20 (the first jobs fill
the caches: data set, model). Figures in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

AUDIT = {"dataset": {"name": "digits", "split": "test"},
         "attacks": [{"name": "fgsm"}, {"name": "pgd", "steps": 10}],
         "epsilons": [0.0, 0.1, 0.2], "seed": 0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--n", type=int, default=300, help="digits test images per audit")
    parser.add_argument("--out", default="out/worker-memory.json")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="worker-memory-"))
    port, key = free_port(), "bench-admin-key"
    env = {**os.environ, "ROBUSTNESS_HOME": str(home), "ROBUSTNESS_ADMIN_KEY": key}
    proc = subprocess.Popen([sys.executable, "-m", "robustness", "serve", "--demo", "--port",
                             str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url, rows = f"http://127.0.0.1:{port}", []
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"},
                          timeout=30) as c:
            deadline = time.monotonic() + 180
            while True:
                try:
                    models = c.get("/v1/models").json()["items"]
                    if models:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("the service did not start with its demo model")
                time.sleep(1)
            spec = {**AUDIT, "model_id": models[0]["id"],
                    "dataset": {**AUDIT["dataset"], "n": args.n}}
            for i in range(args.jobs):
                job = c.post("/v1/audits", json=spec).json()
                while (body := c.get(f"/v1/audits/{job['id']}").json())["status"] not in (
                        "succeeded", "failed", "cancelled"):
                    time.sleep(0.2)
                assert body["status"] == "succeeded", body
                memory = c.get(f"/v1/audits/{job['id']}/report").json()["provenance"]["memory"]
                rows.append(memory)
                print(i + 1, {k: round(v / 2**20, 1) if v else v for k, v in memory.items()},
                      flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    end = [r["rss_end_bytes"] for r in rows]
    early, late = statistics.median(end[10:20]), statistics.median(end[-10:])
    result = {"jobs": args.jobs, "n": args.n, "rss_end_mib": [round(v / 2**20, 1) for v in end],
              "rss_peak_mib": [round(r["rss_peak_bytes"] / 2**20, 1) for r in rows],
              "median_end_jobs_11_20_mib": round(early / 2**20, 1),
              "median_end_last_10_mib": round(late / 2**20, 1),
              "growth_mib": round((late - early) / 2**20, 1)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, list)}))


if __name__ == "__main__":
    main()
