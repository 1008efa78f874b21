"""Request bodies read by hand, so that every spec is parsed by the library's own parser and
its errors read the same over HTTP as on the command line."""

from __future__ import annotations

import json

from fastapi import Request

from service.problems import Problem


async def read_json(request: Request) -> dict:
    body = await request.body()
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Problem(400, f"body: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise Problem(422, "body: must be a JSON object (the spec)")
    return data
