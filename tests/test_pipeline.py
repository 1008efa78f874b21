"""Issue 15's acceptance: a release pipeline that uses only the client (`docs/pipeline.py`)
against a real `robustness serve`: two models uploaded, audited with baseline gates, signed
callbacks verified, the audits compared, one deleted and its stored results gone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from service_processes import ADMIN_KEY, METADATA, Service

from robustness.client import Client
from robustness.models import save_state_dict

REPO = Path(__file__).resolve().parent.parent


def test_a_release_pipeline_through_the_client_alone(tmp_path, digits_model):
    from robustness.training import parse_training_spec, save_training, train_from_spec

    save_state_dict(digits_model.net, tmp_path / "release.safetensors")
    candidate = train_from_spec(parse_training_spec({
        "architecture": "madry_mnist", "dataset": {"name": "digits"}, "method": "fgsm",
        "epsilon": 0.1, "epochs": 8, "lr": 1e-3, "batch_size": 64, "seed": 0,
        "validation": {"n": 0}}), device="cpu")
    candidate_file = save_training(candidate, tmp_path / "candidate")
    (tmp_path / "meta.json").write_text(json.dumps(METADATA))
    home = tmp_path / "home"
    home.mkdir()
    svc = Service(home, {"ROBUSTNESS_CALLBACK_HOSTS": "127.0.0.1"}, split=False)
    try:
        svc.start()
        run = subprocess.run(
            [sys.executable, str(REPO / "docs" / "pipeline.py"),
             str(tmp_path / "release.safetensors"), str(candidate_file),
             str(tmp_path / "meta.json")], check=False, capture_output=True, text=True,
            timeout=600,
            env={**os.environ, "ROBUSTNESS_URL": svc.url, "ROBUSTNESS_API_KEY": ADMIN_KEY})
        lines = run.stdout.splitlines()
        assert run.returncode in (0, 1), run.stdout + run.stderr + svc.tail()
        assert sum("signed callback verified (audit.succeeded)" in line
                   for line in lines) == 3, run.stdout
        baseline_gate = next(line for line in lines if line.startswith("gate of"))
        assert baseline_gate.endswith("passed")  # the release against itself
        verdict = next(line for line in lines if line.startswith("candidate against release"))
        assert verdict.split(": ")[1] in ("regressed", "unchanged", "improved")
        assert lines[-1].endswith("its report now answers 404"), run.stdout
        with Client(svc.url, ADMIN_KEY) as c:
            audits = c.list_jobs("audit").items
            models = c.list_models().items
        assert len(audits) == 2 and len(models) == 2
        # On disk: the two models, the two release audits' reports and their one (shared,
        # identical) adversarial set; the candidate audit's report and set are gone.
        stored = {p.name for p in (home / "artifacts").rglob("*")
                  if p.is_file() and not p.name.startswith(".")}
        assert {m.sha256 for m in models} <= stored and len(stored) == 5, stored
        # The same flow with the command line (docs/pipeline.sh).
        shell = subprocess.run(
            ["bash", str(REPO / "docs" / "pipeline.sh"), str(tmp_path / "release.safetensors"),
             str(candidate_file), str(tmp_path / "meta.json")], check=False, capture_output=True,
            text=True, timeout=600,
            env={**os.environ, "ROBUSTNESS_URL": svc.url, "ROBUSTNESS_API_KEY": ADMIN_KEY,
                 "ROBUSTNESS": f"{sys.executable} -m robustness", "PYTHON": sys.executable})
        out = shell.stdout.splitlines()
        assert shell.returncode == (0 if "gate passed" in out[-3] else 1), \
            shell.stdout + shell.stderr
        assert sum(line.startswith("signed callback of aud_") for line in out) == 3, out
        assert out[-2] == f"candidate against release: {verdict.split(': ')[1]}", out
        assert out[-1].endswith("its report now answers 404"), out
    finally:
        svc.stop()
