"""How a route with a JSON body (a spec) reads it: the caller's key and scope are checked
first, then the body is decoded by hand, so that

- nothing about a body is read or answered before the caller is known (401, 403 first);
- a body that is not JSON is a 400 with the decoder's own words, and one that is not an
  object a 422, as they were before request bodies became typed parameters;
- a JSON body is read as JSON whatever its Content-Type says (`curl -d` sends form encoding
  unless told otherwise).

FastAPI then validates the same bytes against the route's spec model.
"""

from __future__ import annotations

import json

from fastapi.routing import APIRoute
from starlette.requests import Request

from service.auth import authorize
from service.problems import Problem


def _scope_of(dependant) -> str | None:
    """The scope a route's `require(scope)` dependency asks for, if any."""
    for sub in dependant.dependencies:
        scope = getattr(sub.call, "scope", None) or _scope_of(sub)
        if scope:
            return scope
    return None


class JSONBodyRoute(APIRoute):
    def get_route_handler(self):
        handler = super().get_route_handler()
        bodies = self.dependant.body_params
        if not bodies or any(getattr(p.field_info, "media_type", "") != "application/json"
                             for p in bodies):
            return handler  # no body, or a multipart upload
        scope = _scope_of(self.dependant)

        async def read_json_first(request: Request):
            if scope is not None:
                authorize(request, scope)
            body = await request.body()
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

        return read_json_first
