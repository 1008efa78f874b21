"""The typed HTTP contract: every /v1 response is described in openapi.json (2xx bodies with a
schema, errors as problem+json, Bearer auth as a security scheme), a client generated from the
document by a standard generator imports and type-checks, and real responses match the
declared models."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from robustness.evaluation.report_schema import Report
from robustness.http_models import ExamplePage, Job, JobPage, Model, ModelPage
from service.app import create_app
from service.settings import GatewaySettings as Settings

KEY = "contract-admin-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    return create_app(Settings(home=tmp_path_factory.mktemp("home"), reconcile_seconds=3600,
                               admin_key=KEY))


@pytest.fixture(scope="module")
def openapi(app) -> dict:
    return app.openapi()


def _operations(openapi):
    for path, item in openapi["paths"].items():
        for method, op in item.items():
            yield path, method, op


def test_every_2xx_response_of_every_v1_route_has_a_schema(openapi):
    seen = 0
    for path, method, op in _operations(openapi):
        if not path.startswith("/v1/"):
            continue
        ok = {code: r for code, r in op["responses"].items() if code.startswith("2")}
        assert ok, (method, path, "declares no 2xx response")
        for code, response in ok.items():
            if code == "204":
                assert not response.get("content"), (method, path)
                continue
            content = response.get("content")
            assert content, (method, path, code, "has no content")
            for media, body in content.items():
                assert body.get("schema"), (method, path, code, media, "has an empty schema")
            seen += 1
    assert seen >= 18


def test_errors_are_declared_as_problem_json_and_auth_as_bearer(openapi):
    schemes = openapi["components"]["securitySchemes"]
    assert [s["scheme"] for s in schemes.values()] == ["bearer"]
    assert "ProblemDetails" in openapi["components"]["schemas"]
    for path, method, op in _operations(openapi):
        for code in ("4XX", "5XX"):
            content = op["responses"][code]["content"]
            assert list(content) == ["application/problem+json"], (method, path)
        assert "422" not in op["responses"], (method, path, "FastAPI's own 422 schema")
        # Every route but health needs a key (docs and openapi.json are not in the document).
        needs_key = path != "/v1/health"
        assert bool(op.get("security")) == needs_key, (method, path)


def test_request_bodies_are_the_spec_models_and_v1_is_one_prefix(openapi, app):
    bodies = {(p, m): op["requestBody"]["content"] for p, m, op in _operations(openapi)
              if "requestBody" in op}
    refs = {k: c["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
            for k, c in bodies.items() if "application/json" in c}
    assert refs == {("/v1/audits", "post"): "AuditSpec",
                    ("/v1/trainings", "post"): "TrainingSpec",
                    ("/v1/certifications", "post"): "CertifySpec",
                    ("/v1/schedules", "post"): "ScheduleSpec",
                    ("/v1/keys", "post"): "KeySpec"}
    assert "multipart/form-data" in bodies[("/v1/models", "post")]
    assert sorted({p.split("/")[1] for p in openapi["paths"]}) == ["metrics", "v1"]


def test_responses_match_their_declared_models(app, digits_model, tmp_path):
    """Real bodies validate against the models the document declares, and a spec sent
    without a JSON Content-Type is still read as JSON (curl -d's default)."""
    import io

    from robustness.models import save_state_dict

    weights = tmp_path / "m.safetensors"
    save_state_dict(digits_model.net, weights)
    meta = {"architecture": "madry_mnist", "num_classes": 10, "input_shape": [1, 8, 8]}
    with TestClient(app, headers=AUTH) as c:
        r = c.post("/v1/models", files={"file": ("m.safetensors", io.BytesIO(
            weights.read_bytes()))}, data={"metadata": json.dumps(meta)})
        assert r.status_code == 201, r.text
        model = Model.model_validate(r.json())
        assert "card" not in r.json()  # only the keys a record has
        ModelPage.model_validate(c.get("/v1/models").json())
        spec = {"model_id": model.id, "dataset": {"name": "digits", "n": 20},
                "attacks": [{"name": "fgsm"}], "epsilons": [0.1]}
        r = c.post("/v1/audits", content=json.dumps(spec),
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 202, r.text
        job = Job.model_validate(r.json())
        assert r.headers["Location"] == f"/v1/audits/{job.id}"
        assert "history" not in r.json() and r.json()["schedule_id"] is None
        JobPage.model_validate(c.get("/v1/audits").json())
        training = c.post("/v1/trainings", json={"architecture": "madry_mnist",
                                                 "dataset": {"name": "digits"}, "epochs": 1,
                                                 "method": "standard"})
        assert training.status_code == 202 and training.json()["history"] == []
        assert "schedule_id" not in training.json()


def test_a_stored_report_validates_against_the_versioned_report_model(digits_model):
    from robustness.audit import audit
    from robustness.spec import parse_audit_spec

    spec = parse_audit_spec({"dataset": {"name": "digits", "n": 30}, "epsilons": [0.0, 0.1],
                             "attacks": [{"name": "fgsm"}, {"name": "pgd", "steps": 3},
                                         {"name": "deepfool", "steps": 3,
                                          "epsilons": [0.0, 1.0]}],
                             "gate": [{"metric": "accuracy", "attack": "clean", "op": ">=",
                                       "value": 0.5}]})
    from robustness.data import load_dataset

    report = audit(digits_model, load_dataset(spec.dataset), spec, device="cpu").report
    model = Report.model_validate(json.loads(json.dumps(report)))
    assert model.schema_version == 1
    assert model.model_dump(mode="json", exclude_unset=True) == json.loads(json.dumps(report))
    bad = {**report, "schema_version": 2}
    with pytest.raises(ValueError):
        Report.model_validate(bad)


def test_example_records_match_their_model(digits_model):
    from robustness.data import load_dataset
    from robustness.evaluation import run_sweep
    from robustness.spec import parse_audit_spec
    from service.reports import example_page
    from service.routes.listing import Paging

    spec = parse_audit_spec({"dataset": {"name": "digits", "n": 10}, "attacks": [
        {"name": "fgsm"}], "epsilons": [0.1]})
    report = run_sweep(digits_model, load_dataset(spec.dataset), spec, device="cpu").report
    page = example_page(report, Paging(limit=5, offset=0), attack="fgsm", epsilon=0.1,
                        breaking=True, order="confidence")
    assert ExamplePage.model_validate(page).model_dump(exclude_unset=True) == page


def test_a_generated_client_imports_and_type_checks(openapi, tmp_path, monkeypatch):
    document = tmp_path / "openapi.json"
    document.write_text(json.dumps(openapi))
    out = tmp_path / "client"
    # The generator formats its output with ruff, from this environment's scripts.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    run = subprocess.run([sys.executable, "-m", "openapi_python_client", "generate",
                          "--path", str(document), "--output-path", str(out), "--meta",
                          "none"], check=False, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "warning" not in (run.stdout + run.stderr).lower(), run.stdout + run.stderr
    monkeypatch.syspath_prepend(str(tmp_path))
    client = importlib.import_module("client")
    assert hasattr(client, "AuthenticatedClient")
    api = importlib.import_module("client.api.audits.submit_audit")
    assert hasattr(api, "sync_detailed")
    models = importlib.import_module("client.models")
    assert hasattr(models, "Job") and hasattr(models, "Report")
    # What the document produced (models, one module per operation) is checked; the
    # generator's fixed httpx wrapper (client/client.py, the same for every document) is read
    # but not judged: mypy 2 flags its `__exit__(*args)` forwarding.
    derived = [str(out / "models"), str(out / "api"), str(out / "types.py")]
    check = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental",
                            "--ignore-missing-imports", "--follow-imports=silent", *derived],
                           check=False, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert check.returncode == 0, check.stdout[-4000:] + check.stderr[-2000:]


def test_a_caller_hears_about_its_key_before_anything_about_its_body(app):
    """401 and 403 come before the body is looked at (FastAPI alone would decode it first);
    then a body that is not JSON (empty, malformed, not UTF-8) is a 400 in the decoder's
    words, and one that is JSON under another Content-Type is read as JSON."""
    with TestClient(app) as c:
        reader = c.post("/v1/keys", json={"tenant": "t", "scopes": ["read"]},
                        headers=AUTH).json()["key"]
        for body in (b"{not json", b"", b"\xff\xfe"):
            for headers in ({}, {"Authorization": "Bearer nope"}):
                r = c.post("/v1/audits", content=body, headers=headers)
                assert r.status_code == 401 and "Authorization" in r.json()["detail"], r.text
            r = c.post("/v1/audits", content=body,
                       headers={"Authorization": f"Bearer {reader}"})
            assert r.status_code == 403 and "'submit' scope" in r.json()["detail"], r.text
            r = c.post("/v1/audits", content=body, headers=AUTH)
            assert r.status_code == 400, r.text
            assert r.json()["detail"].startswith("body: not valid JSON ("), r.text
        r = c.post("/v1/audits", content=b'{"dataset": {"name": "digits"}, "attacks": '
                   b'[{"name": "pgd", "steps": 0}]}', headers={**AUTH, "Content-Type": "text/json"})
        assert r.status_code == 422, r.text
        problem = r.json()
        assert problem["detail"] == "attacks[0].steps: Input should be greater than 0"
        assert problem["errors"] == [{"field": "attacks[0].steps",
                                      "message": "Input should be greater than 0"}]


def test_every_list_follows_one_pagination_convention(openapi):
    """Each list answers {items, total, limit, offset, next_cursor} and takes limit, offset and
    cursor (GET /v1/models, /v1/<jobs>, /v1/schedules, /v1/keys, …/examples)."""
    schemas = openapi["components"]["schemas"]
    lists = []
    for path, ops in openapi["paths"].items():
        get = ops.get("get")
        if get is None:
            continue
        ref = get["responses"]["200"]["content"].get("application/json", {}).get(
            "schema", {}).get("$ref", "")
        name = ref.rsplit("/", 1)[-1]
        if name and "items" in schemas[name].get("properties", {}):
            lists.append(path)
            assert {"items", "total", "limit", "offset", "next_cursor"} <= \
                set(schemas[name]["properties"]), (path, name)
            params = {p["name"] for p in get.get("parameters", [])}
            assert {"limit", "offset", "cursor"} <= params, (path, params)
    # models, schedules, keys, the three job kinds, their deliveries, an audit's examples
    assert len(lists) == 10, lists
