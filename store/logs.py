"""One log format for the gateway and the workers: JSON lines (`ROBUSTNESS_LOG_FORMAT=json`,
the default) or text. Each record carries the request id and the job id it was logged
under, so a submission can be followed from the gateway's request to its job's worker and to
its callback by one id (`X-Request-ID`)."""

from __future__ import annotations

import json
import logging
import sys
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
JOB_ID: ContextVar[str | None] = ContextVar("job_id", default=None)


class _Context(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        record.job_id = getattr(record, "job_id", None) or JOB_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"time": datetime.fromtimestamp(record.created, UTC)
                .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "level": record.levelname.lower(), "logger": record.name,
                "message": record.getMessage()}
        for key in ("request_id", "job_id", "method", "path", "status", "ms"):
            value = getattr(record, key, None)
            if value is not None:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(fmt: str = "json", level: str | int = "INFO") -> None:
    """The root logger writes one line per record to stderr in `fmt` (json or text)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_Context())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s [%(request_id)s %(job_id)s] %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)


@contextmanager
def job_context(job_id: str | None, request_id: str | None):
    """Within it, every record carries this job's id and its submission's request id."""
    tokens = JOB_ID.set(job_id), REQUEST_ID.set(request_id)
    try:
        yield
    finally:
        JOB_ID.reset(tokens[0])
        REQUEST_ID.reset(tokens[1])
