"""JSON bodies are read as JSON whatever their Content-Type says, as before request bodies
became typed parameters: `curl -d '{...}'` sends form encoding unless told otherwise, and a
spec that is valid JSON should not be refused for its header."""

from __future__ import annotations

from fastapi.routing import APIRoute
from starlette.requests import Request


class JSONBodyRoute(APIRoute):
    def get_route_handler(self):
        handler = super().get_route_handler()
        if self.body_field is None or self.dependant.body_params and any(
                getattr(p.field_info, "media_type", "") != "application/json"
                for p in self.dependant.body_params):
            return handler  # no body, or a multipart upload

        async def as_json(request: Request):
            kind = request.headers.get("content-type", "")
            if "json" not in kind.split(";")[0].lower():
                headers = [(k, v) for k, v in request.scope["headers"]
                           if k != b"content-type"]
                scope = {**request.scope,
                         "headers": [*headers, (b"content-type", b"application/json")]}
                request = Request(scope, request.receive)
            return await handler(request)

        return as_json
