"""Property-based fuzzing of the gateway's OpenAPI schema (schemathesis): generated requests,
schema-valid and schema-violating, to every operation, with an admin key; none may answer
5xx, and every answer's body and content type are the ones the document declares. Bounded: a fixed, derandomized number of examples per operation; no worker runs, so
submitted jobs stay queued."""

from __future__ import annotations

import tempfile
from collections import Counter

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import content_type_conformance, response_schema_conformance

from service.app import create_app
from service.settings import GatewaySettings as Settings

KEY = "fuzz-admin-key"
HOME = tempfile.TemporaryDirectory(prefix="robustness-fuzz-")
APP = create_app(Settings(home=HOME.name, reconcile_seconds=3600, admin_key=KEY,
                          max_upload_bytes=1_000_000))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
STATUSES: Counter = Counter()


@schema.parametrize()
@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors(case):
    response = case.call(headers={"Authorization": f"Bearer {KEY}"})
    STATUSES[response.status_code // 100] += 1
    assert response.status_code < 500, (case.method, case.path, response.status_code,
                                        response.text[:500])
    case.validate_response(response, checks=[response_schema_conformance,
                                             content_type_conformance])


def test_the_fuzz_reached_the_handlers():
    """Guard against a run that only ever met the auth check or the router."""
    assert STATUSES[2] > 0 and STATUSES[4] > 0, STATUSES
