"""`zxsync.sweep_batches` (beat): a flush for every buffer with work, since a buffer's flush
trigger dies with a killed worker."""

from __future__ import annotations

from typing import cast

from workers import keys
from workers.app import app
from workers.batching.policy import send_flush
from workers.policies import HOUSEKEEPING
from workers.redis import get_redis


@app.task(name="zxsync.sweep_batches", **HOUSEKEEPING)
def sweep_batches() -> int:
    """Trigger a flush for every buffer with work (a trigger can die with its worker).

    Every member is swept, whether or not this process imported its kind's handler (a driver
    that runs beat's tasks itself may not have): the flush task runs where the handlers are,
    and drops a kind no handler knows (workers/batching/flush.py)."""
    redis_client = get_redis()
    members = cast(set[str], redis_client.smembers(keys.BATCH_ACTIVE()))
    for member in members:
        kind, connection = member.split("|", 1)
        send_flush(kind, connection, 0.0, "sweep")
    return len(members)
