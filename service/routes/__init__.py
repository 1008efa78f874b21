"""One module per resource under /v1 (the prefix is written once, in `service.app`)."""

from fastapi import APIRouter

from service.json_body import JSONBodyRoute

V1 = "/v1"  # the API's version prefix: every route but /metrics is under it


def resource(prefix: str, tag: str) -> APIRouter:
    """A resource's router: JSON bodies are read as JSON whatever their Content-Type."""
    return APIRouter(prefix=prefix, tags=[tag], route_class=JSONBodyRoute)
