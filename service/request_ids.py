"""X-Request-ID: the caller's (when it is a plausible id) or a new one, set for the request's
logs, echoed in the answer, stored on a job it submits and sent on that job's callback. One
access log line per request, with it. A plain ASGI middleware: it adds no task or copy of
the body to a request, so a refusal still goes out before a large body is read."""

from __future__ import annotations

import logging
import re
import time
import uuid

from store.logs import REQUEST_ID

HEADER = "X-Request-ID"
VALID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
access = logging.getLogger("robustness.access")


class RequestIds:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if VALID.match(given) else uuid.uuid4().hex
        started = time.perf_counter()
        status = [0]

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", []),
                                      (HEADER.lower().encode(), request_id.encode())]
            await send(message)

        token = REQUEST_ID.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)
            ms = round(1000 * (time.perf_counter() - started), 1)
            access.info("%s %s %d %.1f ms", scope["method"], scope["path"], status[0], ms,
                        extra={"request_id": request_id, "method": scope["method"],
                               "path": scope["path"], "status": status[0], "ms": ms})
