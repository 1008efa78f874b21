"""A release pipeline against a running service, through `robustness.client` alone: the flow
`tests/test_pipeline.py` runs end to end (`docs/pipeline.sh` is the same flow with the
command line, and takes its callbacks through this file's receiver).

    ROBUSTNESS_URL=http://127.0.0.1:8000 ROBUSTNESS_API_KEY=... \\
        .venv/bin/python docs/pipeline.py RELEASE.safetensors CANDIDATE.safetensors META.json

Both models are audited with a gate against a baseline: the release against its last audit,
the candidate against the release. Each audit's signed callback is received here and
verified with the tenant's secret; the two audits are compared; the candidate's audit is
deleted. The service must allow callbacks to this machine (ROBUSTNESS_CALLBACK_HOSTS=127.0.0.1).
Prints one line per step; exits 1 if the candidate's gate failed.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from standardwebhooks.webhooks import Webhook

from robustness.client import ApiError, Client

AUDIT = {"dataset": {"name": "digits", "split": "test", "n": 200},
         "attacks": [{"name": "fgsm"}, {"name": "pgd", "steps": 20}],
         "epsilons": [0.0, 0.05, 0.1], "seed": 0}


def gate(baseline: str, tolerance: float) -> list[dict]:
    """PGD accuracy at ε=0.1 no more than `tolerance` below the baseline audit's."""
    return [{"metric": "accuracy", "attack": "pgd", "epsilon": 0.1, "op": ">=",
             "baseline": baseline, "tolerance": tolerance}]


class Receiver:
    """Takes the service's callbacks, keeping only those whose signature verifies."""

    def __init__(self, secret: str):
        self.verified: dict[str, dict] = {}
        self.event = threading.Condition()
        receiver = self

        class Hook(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    message = Webhook(secret).verify(body, dict(self.headers))
                except Exception:  # noqa: BLE001 - a forged or replayed delivery
                    self.send_response(400)
                else:
                    with receiver.event:
                        receiver.verified[message["data"]["id"]] = message
                        receiver.event.notify_all()
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Hook)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/robustness"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, job_id: str, timeout: float = 60) -> dict:
        with self.event:
            if not self.event.wait_for(lambda: job_id in self.verified, timeout):
                raise TimeoutError(f"no verified callback for {job_id} in {timeout} s")
            return self.verified[job_id]


def main(release_file: str, candidate_file: str, metadata_file: str) -> int:
    with open(metadata_file) as f:
        metadata = json.load(f)
    with Client(os.environ["ROBUSTNESS_URL"], os.environ["ROBUSTNESS_API_KEY"]) as c:
        receiver = Receiver(c.webhook_secret().secret)
        release = c.upload_model(release_file, {**metadata, "name": "release"})
        candidate = c.upload_model(candidate_file, {**metadata, "name": "candidate"})
        print(f"uploaded release {release.id} and candidate {candidate.id}")

        def audit(model, rules=None):
            spec = {"model_id": model.id, **AUDIT, "callback_url": receiver.url,
                    **({"gate": rules} if rules else {})}
            job = c.wait(c.submit_audit(spec), timeout=300)
            message = receiver.wait_for(job.id)
            print(f"audit {job.id} of {model.metadata['name']}: {job.status}; signed "
                  f"callback verified ({message['type']})")
            return job

        first = audit(release)
        baseline = audit(release, gate(first.id, 0.0))  # the same model: must hold exactly
        audited = audit(candidate, gate(baseline.id, 0.05))
        for job in (baseline, audited):
            outcome = c.report(job.id).gate
            print(f"gate of {job.id} against its baseline: "
                  f"{'passed' if outcome.passed else 'FAILED'}")
        comparison = c.compare(baseline.id, audited.id, tolerance=0.05)
        for row in comparison.results:
            print(f"  {row.attack} ε={row.epsilon:g}: {row.a:.3f} -> {row.b:.3f} "
                  f"({len(row.broken_in_b)} broken, {len(row.fixed_in_b)} fixed)")
        print(f"candidate against release: {comparison.verdict}")
        passed = c.report(audited.id).gate.passed
        c.delete_job(audited)
        try:
            c.report(audited.id)
        except ApiError as exc:
            print(f"deleted {audited.id}: its report now answers {exc.status}")
        return 0 if passed else 1


def receive(secret: str, url_file: str) -> None:
    """`pipeline.py receive SECRET URL_FILE`, for docs/pipeline.sh: writes the receiver's URL
    to URL_FILE, then prints each verified callback as a JSON line until killed."""
    receiver = Receiver(secret)
    with open(url_file + ".tmp", "w") as f:
        f.write(receiver.url)
    os.replace(url_file + ".tmp", url_file)
    seen: set[str] = set()
    while True:
        with receiver.event:
            receiver.event.wait_for(lambda: set(receiver.verified) - seen)
            for job_id in set(receiver.verified) - seen:
                seen.add(job_id)
                print(json.dumps(receiver.verified[job_id]), flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["receive"]:
        receive(*sys.argv[2:])
    sys.exit(main(*sys.argv[1:]))
