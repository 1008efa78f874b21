"""X-Request-ID: the caller's (when it is a plausible id) or a new one, set for the request's
logs, echoed in the answer, stored on a job it submits and sent on that job's callback. One
access log line per request, with it."""

from __future__ import annotations

import logging
import re
import time
import uuid

from store.logs import REQUEST_ID

HEADER = "X-Request-ID"
VALID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
access = logging.getLogger("robustness.access")


def middleware():
    async def with_request_id(request, call_next):
        given = request.headers.get(HEADER, "")
        request_id = given if VALID.match(given) else uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        try:
            response = await call_next(request)
        finally:
            REQUEST_ID.reset(token)
        response.headers[HEADER] = request_id
        ms = round(1000 * (time.perf_counter() - started), 1)
        access.info("%s %s %d %.1f ms", request.method, request.url.path,
                    response.status_code, ms,
                    extra={"request_id": request_id, "method": request.method,
                           "path": request.url.path, "status": response.status_code, "ms": ms})
        return response
    return with_request_id
