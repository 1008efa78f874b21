"""How a route with a body reads it: first the caller, then the size, then the bytes.

- Nothing of a body is read before the caller's key and scope are checked (401 and 403
  first), so a client without a key cannot make the gateway spool a single byte; nor before
  the route's `before_body(request, caller)` check, if it has one (the model quota).
- A body larger than its route's limit is refused at once on its `Content-Length` (413), and
  one without a length (chunked), or with a false one, is counted as it streams and cut off
  at the limit: JSON specs `ROBUSTNESS_MAX_JSON_BYTES` [1 MiB], model uploads
  `ROBUSTNESS_MAX_UPLOAD_BYTES` plus the multipart envelope.
- A JSON body that is not JSON is a 400 with the decoder's own words, and one that is not an
  object a 422; it is read as JSON whatever its Content-Type says (`curl -d` sends form
  encoding unless told otherwise). FastAPI then validates the same bytes against the route's
  spec model.
"""

from __future__ import annotations

import json

from fastapi import HTTPException
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from service.auth import authorize
from service.problems import Problem

# Room for the multipart boundaries, part headers and the `metadata` field of an upload.
ENVELOPE_BYTES = 64 << 10


def _scope_of(dependant) -> str | None:
    """The scope a route's `require(scope)` dependency asks for, if any."""
    for sub in dependant.dependencies:
        scope = getattr(sub.call, "scope", None) or _scope_of(sub)
        if scope:
            return scope
    return None


def _too_large(limit: int, setting: str) -> HTTPException:
    # An HTTPException, so that FastAPI's form parser passes it on instead of making it a 400.
    return HTTPException(413, f"body: larger than the limit of {limit} bytes ({setting})")


def limited(request: Request, limit: int, setting: str) -> Request:
    """The request, refused now if it announces more than `limit` bytes, and whose body
    stops with a 413 as soon as more than `limit` bytes have arrived."""
    announced = request.headers.get("content-length")
    if announced is not None:
        if not announced.isdigit():
            raise Problem(400, f"Content-Length: not a number of bytes ({announced!r})")
        if int(announced) > limit:
            raise _too_large(limit, setting)
    receive, seen = request.receive, 0

    async def counted() -> dict:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise _too_large(limit, setting)
        return message

    return Request(request.scope, counted)


class BodyRoute(APIRoute):
    def get_route_handler(self):
        handler = super().get_route_handler()
        bodies = self.dependant.body_params
        if not bodies:
            return handler
        scope = _scope_of(self.dependant)
        is_json = all(getattr(p.field_info, "media_type", "") == "application/json"
                      for p in bodies)

        endpoint = self.endpoint

        async def guarded(request: Request):
            if scope is not None:  # a database lookup: off the event loop
                who = await run_in_threadpool(authorize, request, scope)
                # Read now: a route module sets it after its decorator has built this route.
                before_body = getattr(endpoint, "before_body", None)
                if before_body is not None:  # e.g. a quota that refuses the whole upload
                    await run_in_threadpool(before_body, request, who)
            settings = request.app.state.gw.settings
            if not is_json:  # a multipart upload, streamed through the limit
                return await handler(limited(
                    request, settings.max_upload_bytes + ENVELOPE_BYTES,
                    "ROBUSTNESS_MAX_UPLOAD_BYTES plus 64 KiB of multipart envelope"))
            body = await limited(request, settings.max_json_bytes,
                                 "ROBUSTNESS_MAX_JSON_BYTES").body()
            try:
                data = json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise Problem(400, f"body: not valid JSON ({exc})") from None
            if not isinstance(data, dict):
                raise Problem(422, "body: must be a JSON object (the spec)")
            headers = [(k, v) for k, v in request.scope["headers"] if k != b"content-type"]
            headers.append((b"content-type", b"application/json"))

            async def replay() -> dict:
                return {"type": "http.request", "body": body, "more_body": False}

            return await handler(Request({**request.scope, "headers": headers}, replay))

        return guarded
