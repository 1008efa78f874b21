"""Errors as RFC 9457 problem details (`application/problem+json`), each with a message a
user can act on. Validation errors name the field; library errors keep the library's text."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from robustness.errors import RobustnessError
from robustness.spec import error_location, error_message, format_errors

MEDIA_TYPE = "application/problem+json"
TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
          405: "Method Not Allowed", 409: "Conflict", 413: "Content Too Large",
          415: "Unsupported Media Type", 422: "Unprocessable Content",
          429: "Too Many Requests", 500: "Internal Server Error",
          503: "Service Unavailable"}


PROBLEM_SCHEMA = {"$ref": "#/components/schemas/ProblemDetails"}
# Declared on every route: any 4xx or 5xx is a problem+json body (and FastAPI's own 422 schema,
# which this service never sends, is left out).
PROBLEMS = {"4XX": {"description": "the request cannot be served; `detail` says why",
                    "content": {MEDIA_TYPE: {"schema": PROBLEM_SCHEMA}}},
            "5XX": {"description": "the service failed; the request was not applied",
                    "content": {MEDIA_TYPE: {"schema": PROBLEM_SCHEMA}}}}
HTML_PAGE = {200: {"description": "one self-contained HTML page",
                   "content": {"text/html": {"schema": {"type": "string"}}}}}
BINARY_FILE = {200: {"description": "a file",
                     "content": {"application/octet-stream": {
                         "schema": {"type": "string", "format": "binary"}}}}}


class Problem(Exception):
    def __init__(self, status: int, detail: str, headers: dict | None = None, **extra):
        super().__init__(detail)
        self.status, self.detail, self.extra, self.headers = status, detail, extra, headers


def problem_response(status: int, detail: str, headers: dict | None = None, **extra):
    body = {"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status,
            "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


# Where FastAPI says a bad value came from; the field's own path follows.
WHERE = ("body", "query", "path", "form", "header")


def _validation_problem(exc: RequestValidationError):
    """Field errors read as the library's (`attacks[0].steps: ...`), so a spec is refused
    with the same words over HTTP as by `robustness audit --spec`."""
    errors = exc.errors()
    fields = [{"field": error_location(e, WHERE) or "body", "message": error_message(e)}
              for e in errors]
    return problem_response(422, format_errors(errors, skip=WHERE), errors=fields)


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem):
        return problem_response(exc.status, exc.detail, headers=exc.headers, **exc.extra)

    @app.exception_handler(RobustnessError)
    async def _library(_: Request, exc: RobustnessError):
        return problem_response(422, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError):
        return _validation_problem(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "")
        return problem_response(exc.status_code, detail, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception):
        return problem_response(500, f"internal error ({type(exc).__name__}); the request "
                                     f"was not applied")
