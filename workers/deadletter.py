"""The dead-letter store: a Redis stream of every job that failed for good, with its cause.

A stream survives worker restarts (with Redis persistence) and keeps entries until an operator
replays or discards them; each entry carries the full job so nothing is ever silently dropped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any, cast

import redis

from schemas.errors import SyncError
from workers.redact import redact

STREAM = "zxs:dlq"
REPLAYED_STREAM = "zxs:dlq:replayed"


@dataclass(frozen=True)
class DeadLetter:
    stage: str
    connection: str
    module: str
    record_id: str
    error_kind: str
    error: str
    hint: str
    field: str
    attempts: int
    payload: str
    traceback: str
    failed_at: str
    id: str = ""


def describe(exc: BaseException) -> tuple[str, str, str, str]:
    """(kind, message, hint, field) of any exception, plain words first."""
    if isinstance(exc, SyncError):
        return exc.kind, exc.message, exc.hint or "", exc.field or ""
    return "bug", f"{type(exc).__name__}: {exc}", "This is a defect: report it with the trace.", ""


class DeadLetterStore:
    def __init__(self, redis_client: redis.Redis) -> None:
        self._redis = redis_client

    def add(
        self,
        *,
        stage: str,
        job: dict[str, Any],
        exc: BaseException,
        attempts: int,
        payload: str,
        traceback: str,
    ) -> DeadLetter:
        kind, message, hint, field = describe(exc)
        message, payload, traceback = redact(message), redact(payload), redact(traceback)
        letter = DeadLetter(
            stage=stage,
            connection=str(job.get("connection", "")),
            module=str(job.get("module", "")),
            record_id=str(job.get("record_id", "")),
            error_kind=kind,
            error=message,
            hint=hint,
            field=field,
            attempts=attempts,
            payload=payload,
            traceback=traceback,
            failed_at=datetime.now(UTC).isoformat(),
        )
        fields: dict[Any, Any] = {k: str(v) for k, v in asdict(letter).items() if k != "id"}
        entry_id = self._redis.xadd(STREAM, fields)
        return replace(letter, id=str(entry_id))

    def list(self, count: int = 100) -> list[DeadLetter]:
        rows = cast(list[tuple[str, dict[str, str]]], self._redis.xrange(STREAM, count=count))
        return [self._letter(entry_id, fields) for entry_id, fields in rows]

    def get(self, entry_id: str) -> DeadLetter | None:
        rows = cast(
            list[tuple[str, dict[str, str]]], self._redis.xrange(STREAM, min=entry_id, max=entry_id)
        )
        return self._letter(*rows[0]) if rows else None

    def discard(self, entry_id: str) -> bool:
        return bool(self._redis.xdel(STREAM, entry_id))

    def mark_replayed(self, letter: DeadLetter) -> None:
        """Move the letter to the replayed stream (kept for audit); a new failure re-enters."""
        fields: dict[Any, Any] = {k: str(v) for k, v in asdict(letter).items()}
        fields["replayed_at"] = datetime.now(UTC).isoformat()
        pipe = self._redis.pipeline()
        pipe.xadd(REPLAYED_STREAM, fields)
        pipe.xdel(STREAM, letter.id)
        pipe.execute()

    @staticmethod
    def _letter(entry_id: str, fields: dict[str, str]) -> DeadLetter:
        values: dict[str, Any] = {**fields, "attempts": int(fields["attempts"]), "id": entry_id}
        return DeadLetter(**values)
