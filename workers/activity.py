"""What the ops console and /metrics read that no other store keeps: per connection, documents
synced and failed per hour, the last successful sync, Xero's 429 answers, and beat's heartbeat.

Outcomes are counted when a record finishes (workers/outcomes.py: `RecordHistory.finish` is the
one place every outcome is recorded), so no stage needs to know about the console. Counters live
in Redis hashes that expire after two days: the console shows the last 24 hours.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import redis
import structlog

from clients.http import Limiter
from schemas.wire import loads
from workers import keys
from workers.history import ACTION_OUTCOMES

HOURLY_TTL_SECONDS = 2 * 86_400
SYNCED = frozenset(ACTION_OUTCOMES.values())  # created, updated, voided, deleted
log = structlog.get_logger("zxsync.activity")


def hour_key(connection: str, at: datetime) -> str:
    return keys.ACTIVITY_HOUR(connection, f"{at.astimezone(UTC):%Y%m%d%H}")


def last_sync_key(connection: str) -> str:
    return keys.LAST_SYNC(connection)


def rate_limited_key(connection: str) -> str:
    return keys.XERO_429(connection)


def hourly(
    redis_client: redis.Redis, connection: str, hours: int = 24, now: datetime | None = None
) -> list[tuple[datetime, int, int]]:
    """(hour start, synced, failed) for the last `hours` hours, oldest first, this hour last."""
    end = (now or datetime.now(UTC)).astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    starts = [end - timedelta(hours=h) for h in range(hours - 1, -1, -1)]
    pipe = redis_client.pipeline(transaction=False)
    for start in starts:
        pipe.hmget(hour_key(connection, start), ["synced", "failed"])
    rows = cast(list[list[str | None]], pipe.execute())
    return [
        (start, int(row[0] or 0), int(row[1] or 0)) for start, row in zip(starts, rows, strict=True)
    ]


def last_sync(redis_client: redis.Redis, connection: str) -> datetime | None:
    raw = redis_client.get(last_sync_key(connection))
    return datetime.fromisoformat(str(raw)) if raw else None


def xero_rate_limited(redis_client: redis.Redis, connection: str) -> int:
    """Xero 429 answers this connection received (since Redis was started on its data)."""
    return int(cast(str | None, redis_client.get(rate_limited_key(connection))) or 0)


def beat_heartbeat(redis_client: redis.Redis) -> float | None:
    raw = redis_client.get(keys.BEAT_HEARTBEAT())
    return float(cast(str, raw)) if raw else None


def record_heartbeat(redis_client: redis.Redis) -> None:
    """Called by a beat-scheduled task: beat and a worker are both alive now."""
    redis_client.set(keys.BEAT_HEARTBEAT(), time.time())


def count_outcome(redis_client: redis.Redis, connection: str, key: str) -> None:
    """Count the finished record in its hour (synced or failed; skips are not counted). Never
    raises: the outcome is already recorded."""
    try:
        raw = cast(str | None, redis_client.hget(keys.OUTCOMES(connection), key))
        outcome = loads(raw)[0] if raw else ""
        now = datetime.now(UTC)
        field = "synced" if outcome in SYNCED else "failed" if outcome == "failed" else ""
        if not field:
            return
        pipe = redis_client.pipeline(transaction=False)
        pipe.hincrby(hour_key(connection, now), field, 1)
        pipe.expire(hour_key(connection, now), HOURLY_TTL_SECONDS)
        if field == "synced":
            pipe.set(last_sync_key(connection), now.isoformat())
        pipe.execute()
    except Exception:
        log.exception("activity.count_failed", connection=connection, record=key)


class CountingLimiter:
    """The Xero limiter, counting Xero's 429 answers per connection on the way: every answer
    passes `observe`, and Xero names the limit in `X-Rate-Limit-Problem` on a 429 only."""

    def __init__(self, inner: Limiter, redis_client: redis.Redis, connection: str) -> None:
        self.inner = inner  # the limiter itself (its windows), for checks and tests
        self._redis = redis_client
        self._connection = connection

    def slot(self) -> AbstractContextManager[Any]:
        return self.inner.slot()

    def observe(self, permit: Any, headers: Mapping[str, str]) -> None:
        if "X-Rate-Limit-Problem" in headers:
            self._redis.incr(rate_limited_key(self._connection))
        self.inner.observe(permit, headers)
