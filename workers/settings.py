"""The workers' own settings (device, caches, heartbeat, time limits), on top of what they
share with the gateway (`store.settings`). Read once from the environment."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from store.settings import Settings


class WorkerSettings(Settings):
    device: str = Field(default="auto", description="worker device: auto, cpu, cuda, cuda:1")
    model_cache_size: int = 8
    dataset_cache_size: int = 4
    heartbeat_seconds: float = Field(default=2.0, description="how often a running job's "
                                     "record is touched (below the lease)")
    # Per job kind (store.kinds names the field): past it, the job fails between batches.
    audit_time_limit: int = Field(default=6 * 3600, description="seconds; the job then fails")
    training_time_limit: int = Field(default=24 * 3600)
    certification_time_limit: int = Field(default=6 * 3600)
    shard_examples: int = Field(default=0, ge=0, description="an audit of more examples "
                                "than this runs in shards of about this many (whole batches), "
                                "each a task any worker takes; 0: audits are never sharded")
    shard_max_attempts: int = Field(default=3, ge=1, description="a shard whose worker died "
                                    "this many times fails its audit")
    stop_grace_seconds: float = Field(default=5.0, description="how long a job's model code "
                                      "may take to reach its next batch after a cancel or "
                                      "the time limit, before its process is killed")


@lru_cache(maxsize=1)
def get_worker_settings() -> WorkerSettings:
    return WorkerSettings()
