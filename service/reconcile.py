"""The database is the source of truth: find jobs whose message is gone and send it again.

Two ways a message vanishes: the broker lost it (Redis restarted without persistence, or the
gateway died between storing the job and publishing), or a worker took it and died (SIGKILL,
lost machine) so the job sits `running` with a heartbeat that stopped. A duplicate message is
harmless (the claim in `store.transitions` lets exactly one delivery run a job), so when the broker
cannot be inspected the job is simply sent again.
"""

from __future__ import annotations

import base64
import json
import logging
from datetime import timedelta
from pathlib import Path

from sqlalchemy import or_, select

from store.db import Database, JobRecord, utcnow
from store.kinds import QUEUES
from store.queue import send
from store.transitions import give_up_on_stale

log = logging.getLogger(__name__)


def _job_id_of(raw: bytes | str) -> str | None:
    """The job id a Celery (protocol 2, JSON) message carries, from its raw broker form."""
    try:
        message = json.loads(raw)
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return args[0] if args else None
    except Exception:  # noqa: BLE001 - not a message of ours
        return None


def queued_message_ids(broker_url: str) -> set[str] | None:
    """Job ids with a message waiting in a queue; None if the broker cannot tell.

    Delivered messages do not count: a worker claims its job the moment it receives the
    message, so a job still queued (past the grace period) or running without heartbeats
    whose message was delivered belongs to a worker that died, and Redis would hold that
    message back until its visibility timeout."""
    if broker_url.startswith(("redis://", "rediss://")):
        import redis

        client = redis.Redis.from_url(broker_url, socket_timeout=5)
        raw = [m for q in QUEUES for m in client.lrange(q, 0, -1)]
        return {i for i in map(_job_id_of, raw) if i}
    if broker_url.startswith("sqla+sqlite:///"):
        # kombu's SQLAlchemy transport: waiting messages are the visible rows. A fetched
        # message turns invisible, so one whose worker died before claiming the job is gone:
        # exactly what this finds.
        import sqlite3

        path = broker_url[len("sqla+sqlite:///"):]
        if not Path(path).exists():  # nothing was ever sent
            return set()
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
            try:
                rows = conn.execute("SELECT payload FROM kombu_message WHERE visible = 1")
            except sqlite3.OperationalError:  # no message was ever sent
                return set()
            return {i for (payload,) in rows if (i := _job_id_of(payload))}
    return None


def reconcile(celery, db: Database, *, lease_seconds: float, grace_seconds: float = 10.0,
              broker_url: str = "", max_attempts: int = 3) -> list[str]:
    """One pass; returns the ids sent again."""
    failed = give_up_on_stale(db, lease_seconds, max_attempts)
    if failed:
        log.warning("gave up on %s after %d attempts", failed, max_attempts)
    now = utcnow()
    grace = now - timedelta(seconds=grace_seconds)
    stale = now - timedelta(seconds=lease_seconds)
    with db.session() as s:
        candidates = list(s.execute(select(JobRecord).where(or_(
            (JobRecord.status == "running") & (JobRecord.heartbeat_at < stale)
            & or_(JobRecord.enqueued_at.is_(None), JobRecord.enqueued_at < stale),
            (JobRecord.status == "queued") & (JobRecord.enqueued_at.is_(None))
            & (JobRecord.created_at < grace),
            (JobRecord.status == "queued") & (JobRecord.enqueued_at < grace)))).scalars())
    if not candidates:
        return []
    try:
        present = queued_message_ids(broker_url)
    except Exception as exc:  # noqa: BLE001 - try again next pass
        log.warning("cannot inspect the broker (%s); not re-enqueueing this pass", exc)
        return []
    resent = []
    for job in candidates:
        waiting = job.status == "queued" and job.enqueued_at is not None
        if job.id in (present or ()) or (waiting and present is None):
            continue  # its message is (or may be) still in the broker
        if send(celery, db, job):
            resent.append(job.id)
    if resent:
        log.warning("re-enqueued %d job(s) whose message was lost: %s", len(resent), resent)
    return resent
