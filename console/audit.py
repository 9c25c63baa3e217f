"""Who did what from the console: one Redis stream, newest last (moved to PostgreSQL later)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import redis

STREAM = "zxs:console:audit"
MAX_LINES = 100_000


@dataclass(frozen=True)
class AuditLine:
    at: str
    user: str
    action: str
    target: str
    detail: str


def record(
    redis_client: redis.Redis, user: str, action: str, target: str, detail: str = ""
) -> None:
    fields: dict[Any, Any] = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "user": user,
        "action": action,
        "target": target,
        "detail": detail,
    }
    redis_client.xadd(STREAM, fields, maxlen=MAX_LINES, approximate=True)


def recent(redis_client: redis.Redis, count: int = 200, target: str = "") -> list[AuditLine]:
    """Newest first; only lines about `target` when given."""
    rows = cast(list[tuple[str, dict[str, str]]], redis_client.xrevrange(STREAM, count=count))
    lines = [AuditLine(**fields) for _, fields in rows]
    return [line for line in lines if not target or line.target == target]
