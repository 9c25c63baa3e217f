"""A record's history: every stage it went through, when, and how it ended.

Operators ask "what happened to invoice X?"; the answer is a Redis list per record plus a final
outcome per record that the demo and `zxsync status` read.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal, cast

import redis

from schemas.wire import dumps, loads

Outcome = Literal["created", "updated", "deleted", "skipped", "failed", "duplicate"]
HISTORY_TTL_SECONDS = 90 * 24 * 3600


def record_key(connection: str, module: str, record_id: str) -> str:
    return f"{connection}:{module}:{record_id}"


class RecordHistory:
    def __init__(self, redis_client: redis.Redis) -> None:
        self._redis = redis_client

    def log(self, key: str, stage: str, event: str, **detail: Any) -> None:
        entry = {"at": datetime.now(UTC).isoformat(), "stage": stage, "event": event, **detail}
        name = f"zxs:history:{key}"
        pipe = self._redis.pipeline()
        pipe.rpush(name, dumps(entry))
        pipe.expire(name, HISTORY_TTL_SECONDS)
        pipe.execute()

    def entries(self, key: str) -> list[dict[str, Any]]:
        rows = cast(list[str], self._redis.lrange(f"zxs:history:{key}", 0, -1))
        return [loads(raw) for raw in rows]

    def finish(self, connection: str, key: str, outcome: Outcome, detail: str = "") -> None:
        """The record's final outcome for this event (read by the demo and by status)."""
        self._redis.hset(f"zxs:outcomes:{connection}", key, dumps([outcome, detail]))

    def outcomes(self, connection: str) -> dict[str, tuple[str, str]]:
        raw = cast(dict[str, str], self._redis.hgetall(f"zxs:outcomes:{connection}"))
        return {k: (loads(v)[0], loads(v)[1]) for k, v in raw.items()}
