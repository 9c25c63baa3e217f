"""The dead-letter store: a table of every job that failed for good, with its cause.

Rows live in the system of record (workers/store) and are never deleted by the code: a letter
is open until an operator replays or discards it, and then keeps who did that and when (the
accountant asks why a document is missing). Each row carries the full job, so nothing is ever
silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

import redis
from pydantic import BaseModel, ConfigDict
from sqlalchemy import delete, insert, select, update

from schemas.errors import SyncError
from workers.redact import redact
from workers.store import Database, get_database
from workers.store.schema import alert_deliveries, dead_letters

Status = Literal["open", "replayed", "discarded"]
FIELDS = (
    "stage",
    "connection",
    "module",
    "record_id",
    "error_kind",
    "error",
    "hint",
    "field",
    "attempts",
    "payload",
    "traceback",
    "failed_at",
)


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


class AlertDelivery(BaseModel):
    """One report channel's last attempt at telling about a letter (workers/alerts.py): a
    retry of the report skips the channels that took it."""

    model_config = ConfigDict(frozen=True)

    channel: str
    ok: bool
    at: str  # ISO 8601, UTC
    attempt: int  # the report task's attempt, from 1
    error: str = ""  # why it failed, redacted


def describe(exc: BaseException) -> tuple[str, str, str, str]:
    """(kind, message, hint, field) of any exception, plain words first."""
    if isinstance(exc, SyncError):
        return exc.kind, exc.message, exc.hint or "", exc.field or ""
    return "bug", f"{type(exc).__name__}: {exc}", "This is a defect: report it with the trace.", ""


class DeadLetterStore:
    def __init__(self, redis_client: redis.Redis, database: Database | None = None) -> None:
        self._redis = redis_client
        self._database = database

    @property
    def database(self) -> Database:
        return self._database or get_database()

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
        return replace(letter, id=self.insert(letter))

    def insert(self, letter: DeadLetter, legacy_id: str | None = None) -> str:
        """Store an open letter; one migrated from Redis (`legacy_id`) is stored once."""
        values = {name: getattr(letter, name) for name in FIELDS}
        with self.database.begin() as conn:
            if legacy_id is not None:
                found = conn.execute(
                    select(dead_letters.c.id).where(dead_letters.c.legacy_id == legacy_id)
                ).scalar()
                if found is not None:
                    return str(found)
            result = conn.execute(
                insert(dead_letters).values(status="open", legacy_id=legacy_id, **values)
            )
            key = result.inserted_primary_key
            assert key is not None
            return str(key[0])

    def list(self, count: int = 100, status: Status = "open") -> list[DeadLetter]:
        """Oldest first, like the stream was."""
        query = (
            select(dead_letters)
            .where(dead_letters.c.status == status)
            .order_by(dead_letters.c.id)
            .limit(count)
        )
        with self.database.begin(read=True) as conn:
            return [self._letter(row._mapping) for row in conn.execute(query)]

    def get(self, entry_id: str) -> DeadLetter | None:
        """An open letter by id (a replayed or discarded one is no longer there to act on)."""
        if not entry_id.isdigit():
            return None
        query = select(dead_letters).where(
            dead_letters.c.id == int(entry_id), dead_letters.c.status == "open"
        )
        with self.database.begin(read=True) as conn:
            row = conn.execute(query).first()
        return self._letter(row._mapping) if row is not None else None

    def discard(self, entry_id: str, by: str = "") -> bool:
        return self._close(entry_id, "discarded", by)

    def mark_replayed(self, letter: DeadLetter, by: str = "") -> None:
        """The letter is closed as replayed (kept, with who and when); a new failure re-enters."""
        self._close(letter.id, "replayed", by)

    def _close(self, entry_id: str, status: Status, by: str) -> bool:
        if not entry_id.isdigit():
            return False
        stmt = (
            update(dead_letters)
            .where(dead_letters.c.id == int(entry_id), dead_letters.c.status == "open")
            .values(status=status, status_by=by, status_at=datetime.now(UTC).isoformat())
        )
        with self.database.begin() as conn:
            return bool(conn.execute(stmt).rowcount)

    def deliveries(self, letter_id: str) -> dict[str, AlertDelivery]:
        """Each report channel's last attempt for this letter."""
        if not letter_id.isdigit():
            return {}
        d = alert_deliveries
        query = select(d.c.channel, d.c.ok, d.c.at, d.c.attempt, d.c.error).where(
            d.c.letter_id == int(letter_id)
        )
        with self.database.begin(read=True) as conn:
            return {
                channel: AlertDelivery(
                    channel=channel, ok=bool(ok), at=at, attempt=attempt, error=error or ""
                )
                for channel, ok, at, attempt, error in conn.execute(query)
            }

    def record_delivery(self, letter_id: str, delivery: AlertDelivery) -> None:
        """Keep this attempt as the channel's last for the letter."""
        d = alert_deliveries
        key = (d.c.letter_id == int(letter_id)) & (d.c.channel == delivery.channel)
        with self.database.begin() as conn:
            conn.execute(delete(d).where(key))
            conn.execute(insert(d).values(letter_id=int(letter_id), **delivery.model_dump()))

    @staticmethod
    def _letter(row: Any) -> DeadLetter:
        values: dict[str, Any] = {name: row[name] for name in FIELDS}
        return DeadLetter(**values, id=str(row["id"]))
