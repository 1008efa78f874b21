"""What running jobs in a sandbox process (`workers.sandbox`) costs a normal audit.

The same stored audit job, run alternately in the worker process (the kind's runner called
directly, as before the sandbox) and through `workers.running.run_job` (claim, heartbeat, the
sandbox, outcome), `--rounds` times each; the sandbox is warm (a worker process starts it
before its first job), and a cold start is timed once on its own.

    .venv/bin/python bench/sandbox_overhead.py --data-root ../shared/data [--n 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

SPEC = {"attacks": [{"name": "fgsm"}, {"name": "pgd", "steps": 40}],
        "epsilons": [0.1, 0.2, 0.3], "batch_size": 500}


TRAINING = {"architecture": "wong_mnist", "method": "standard", "epochs": 1, "seed": 0,
            "dataset": {"name": "mnist", "split": "train", "n": 20000}}


class QuietBeat:
    def progress(self, done, total, phase):
        pass

    def record(self, **values):
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--n", type=int, default=1000, help="MNIST test images")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (both ways)")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before torch, here and in the sandbox

    import torch

    from robustness.training import parse_training_spec, save_training, train_from_spec
    from service.demo import register_file
    from store import transitions
    from workers.context import WorkerContext
    from workers.runners import run_audit_job
    from workers.running import run_job
    from workers.sandbox import SANDBOXES
    from workers.settings import WorkerSettings

    torch.set_num_threads(args.threads)
    home = Path(tempfile.mkdtemp(prefix="sandbox-bench-"))
    # A normally trained CNN (about a minute): an untrained one is wrong on most images
    # before any attack, so the attacks would have next to nothing to do.
    trained = train_from_spec(parse_training_spec(TRAINING), data_root=args.data_root,
                              device="cpu")
    weights = save_training(trained, home / "trained")
    ctx = WorkerContext(WorkerSettings(home=home, data_root=Path(args.data_root).resolve(),
                                       device="cpu"))
    model = register_file(ctx.db, ctx.store, weights,
                          {"architecture": "wong_mnist", "num_classes": 10})
    spec = {"model_id": model, "dataset": {"name": "mnist", "n": args.n}, **SPEC}

    def new_job():
        return transitions.create_job(ctx.db, "audit", spec, model).id

    def in_process() -> float:
        job_id = new_job()
        start = time.perf_counter()
        token = transitions.claim(ctx.db, job_id, 120)
        outcome = run_audit_job(ctx, transitions.get_job(ctx.db, job_id), QuietBeat())
        transitions.finish(ctx.db, job_id, token, "succeeded", **outcome)
        return time.perf_counter() - start

    def sandboxed() -> float:
        job_id = new_job()
        start = time.perf_counter()
        assert run_job(ctx, job_id) == "succeeded", transitions.get_job(ctx.db, job_id).error
        return time.perf_counter() - start

    cold = sandboxed()  # starts the sandbox: what a job pays if no sandbox was started early
    in_process()  # the worker process's own caches, warm like the sandbox's
    times: dict[str, list[float]] = {"in process": [], "sandbox": []}
    for _ in range(args.rounds):
        times["in process"].append(in_process())
        times["sandbox"].append(sandboxed())
    SANDBOXES.close_all()
    medians = {k: statistics.median(v) for k, v in times.items()}
    print(json.dumps({"n": args.n, "spec": SPEC, "threads": args.threads,
                      "torch": torch.__version__, "seconds": times,
                      "cold_sandbox_job_seconds": cold,
                      "overhead": medians["sandbox"] / medians["in process"] - 1}, indent=1))


if __name__ == "__main__":
    main()
