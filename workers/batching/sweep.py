"""`zxsync.sweep_batches` (beat): a flush for every buffer with work, since a buffer's flush
trigger dies with a killed worker."""

from __future__ import annotations

from typing import cast

from workers import keys
from workers.app import app
from workers.batching.kinds import KINDS
from workers.batching.policy import send_flush
from workers.policies import HOUSEKEEPING
from workers.redis import get_redis


@app.task(name="zxsync.sweep_batches", **HOUSEKEEPING)
def sweep_batches() -> int:
    """Trigger a flush for every buffer with work (a trigger can die with its worker)."""
    redis_client = get_redis()
    swept = 0
    for member in cast(set[str], redis_client.smembers(keys.BATCH_ACTIVE())):
        kind, connection = member.split("|", 1)
        if kind in KINDS:
            send_flush(kind, connection, 0.0, "sweep")
            swept += 1
    return swept
