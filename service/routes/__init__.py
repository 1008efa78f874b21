"""One module per resource under /v1 (the prefix is written once, in `service.app`)."""

from fastapi import APIRouter

from service.request_body import BodyRoute

V1 = "/v1"  # the API's version prefix: every route but /metrics is under it


def resource(prefix: str, tag: str) -> APIRouter:
    """A resource's router: bodies are read only from a known caller, within their limit."""
    return APIRouter(prefix=prefix, tags=[tag], route_class=BodyRoute)
