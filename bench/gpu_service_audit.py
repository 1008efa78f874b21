"""One MNIST audit end to end through the service on the machine's GPU (issue 17's GPU check;
bench/gpu_check.sh runs it): `robustness serve` with its embedded broker and SQLite,
ROBUSTNESS_DEVICE=cuda, the model uploaded over HTTP, the default audit (`standard`) over
an ε grid, the report read back. Prints and writes the figures a reader needs: status,
accuracies, seconds, the device, peak memory and chosen batch size the report's provenance
names (the spec leaves `batch_size` unset, so the GPU's free memory chooses it).

    python3 bench/gpu_service_audit.py --data-root .gpu/data \\
        --model .gpu/models/fgsm-at/model.safetensors [--n 1000] [--out out/gpu-service.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from service_processes import AUTH, Service, finished, wait_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--model", required=True, help="checkpoint with its card beside it")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", default="out/gpu-service.json")
    args = parser.parse_args()
    weights = Path(args.model)
    card = json.loads(weights.with_suffix(".json").read_text())
    home = Path(tempfile.mkdtemp(prefix="gpu-service-"))
    svc = Service(home, {"ROBUSTNESS_DEVICE": args.device,
                         "ROBUSTNESS_DATA_ROOT": str(Path(args.data_root).resolve())},
                  split=False)
    result: dict = {"device": args.device, "n": args.n}
    try:
        svc.start()
        with httpx.Client(base_url=svc.url, headers=AUTH, timeout=60) as client:
            with open(weights, "rb") as f:
                r = client.post("/v1/models", files={"file": (weights.name, f)},
                                data={"metadata": json.dumps(card["metadata"])})
            r.raise_for_status()
            spec = {"model_id": r.json()["id"], "epsilons": [0.1, 0.2, 0.3], "seed": 0,
                    "dataset": {"name": "mnist", "split": "test", "n": args.n}}
            started = time.perf_counter()
            r = client.post("/v1/audits", json=spec)
            r.raise_for_status()
            job = wait_for(client, f"/v1/audits/{r.json()['id']}", finished, timeout=480)
            result["seconds"] = round(time.perf_counter() - started, 1)
            result["status"], result["error"] = job["status"], job.get("error")
            if job["status"] == "succeeded":
                report = client.get(f"/v1/audits/{job['id']}/report").json()
                prov = report["provenance"]
                result.update(
                    clean=report["clean"]["accuracy"],
                    accuracy={str(r["epsilon"]): r["accuracy"] for r in report["results"]},
                    checks={c["id"]: c["status"] for c in report["checks"]},
                    provenance={k: prov.get(k) for k in ("device", "memory", "versions",
                                                         "attack_seconds", "checks_seconds",
                                                         "passes_per_example",
                                                         "batch_size")})
    except Exception as exc:  # noqa: BLE001 - the log says what broke; the file says it too
        result["failure"] = f"{type(exc).__name__}: {exc}"
        result["logs"] = svc.tail()
    finally:
        svc.stop()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    sys.exit(0 if result.get("status") == "succeeded" else 1)


if __name__ == "__main__":
    main()
