"""Shard state in the database (store.shards), on SQLite and on the machine's PostgreSQL: one
claim wins, a dead worker's shard is claimable again after its lease, only the current claim
stores a result, and shards run only while their audit does."""

import time

import pytest
from service_processes import PostgresDatabase

from store import shards, transitions
from store.db import Database, ShardRecord


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path}/jobs.db")
        yield database
        database.dispose()
    else:
        pg = PostgresDatabase()
        database = Database(pg.url.replace("postgresql://", "postgresql+psycopg://"))
        yield database
        database.dispose()
        pg.drop()


def _running_audit(db) -> str:
    job = transitions.create_job(db, "audit", {"dataset": {"name": "digits"}}, None)
    assert transitions.claim(db, job.id, 60) is not None
    return job.id


def test_one_claim_wins_and_only_it_stores_the_result(db):
    job_id = _running_audit(db)
    made = shards.plan(db, job_id, [(0, 100), (100, 200), (200, 230)], batch_size=50)
    assert [(r.index, r.start, r.stop, r.status, r.batch_size) for r in made] == \
        [(0, 0, 100, "queued", 50), (1, 100, 200, "queued", 50), (2, 200, 230, "queued", 50)]
    # A restarted coordinator gets the same shards, whatever it would plan now (another
    # machine may fit another batch: the shards keep the one they were seeded with).
    again = shards.plan(db, job_id, [(0, 230)], batch_size=230)
    assert [(r.stop, r.batch_size) for r in again] == [(100, 50), (200, 50), (230, 50)]
    first = shards.claim(db, job_id, 1, lease_seconds=60)
    assert first is not None and shards.claim(db, job_id, 1, lease_seconds=60) is None
    assert shards.claim_next(db, job_id, lease_seconds=60)[0] == 0
    assert shards.touch(db, job_id, 1, first, progress_completed=3, progress_total=9)
    assert not shards.touch(db, job_id, 1, "someone else")
    assert not shards.finish(db, job_id, 1, "someone else", "a" * 64)
    assert shards.finish(db, job_id, 1, first, "a" * 64)
    assert not shards.finish(db, job_id, 1, first, "b" * 64)  # stored once
    record = {r.index: r for r in shards.shards(db, job_id)}[1]
    assert (record.status, record.result_sha256, record.attempts, record.progress_completed) \
        == ("succeeded", "a" * 64, 1, 3)
    assert shards.claim(db, job_id, 1, lease_seconds=0) is None  # done is done


def test_a_dead_workers_shard_is_claimed_again_and_the_old_claim_is_void(db):
    job_id = _running_audit(db)
    shards.plan(db, job_id, [(0, 50), (50, 100)])
    dead = shards.claim(db, job_id, 0, lease_seconds=60)
    assert shards.claim(db, job_id, 0, lease_seconds=60) is None  # its lease is alive
    time.sleep(0.05)
    again = shards.claim(db, job_id, 0, lease_seconds=0.01)
    assert again is not None and again != dead
    assert not shards.touch(db, job_id, 0, dead) and not shards.finish(db, job_id, 0, dead,
                                                                        "c" * 64)
    assert shards.finish(db, job_id, 0, again, "d" * 64)
    # A shard that kills its worker every time ends failed after max_attempts.
    for _ in range(3):
        time.sleep(0.05)
        assert shards.claim(db, job_id, 1, lease_seconds=0.01) is not None
    time.sleep(0.05)
    assert shards.give_up_on_stale(db, lease_seconds=0.01, max_attempts=3) == [(job_id, 1)]
    record = {r.index: r for r in shards.shards(db, job_id)}[1]
    assert record.status == "failed" and "3 times" in record.error


def test_shards_run_only_while_their_audit_runs(db):
    job_id = _running_audit(db)
    shards.plan(db, job_id, [(0, 50), (50, 100)])
    token = shards.claim(db, job_id, 0, lease_seconds=60)
    assert transitions.request_cancel(db, job_id) == "running"
    # The cancel reaches a running shard at its next heartbeat, and no new shard starts.
    assert not shards.touch(db, job_id, 0, token)
    assert shards.claim(db, job_id, 1, lease_seconds=60) is None
    assert shards.fail(db, job_id, 0, token, "stopped: cancelled")
    # The shards go with their audit.
    other = _running_audit(db)
    shards.plan(db, other, [(0, 10)])
    with db.session.begin() as s:
        s.delete(s.get(type(transitions.get_job(db, other)), other))
    with db.session() as s:
        assert s.query(ShardRecord).filter_by(job_id=other).count() == 0
