"""A record's history: every stage it went through, when, and how it ended.

Operators ask "what happened to invoice X?"; the answer is the record's rows in the database's
append-only history table (workers/store) plus a final outcome per record, kept in the database
(the accountant's export reads it) and in a Redis hash the demo, the console and `zxsync status`
read. Which records are in flight, and since when they moved, stays in Redis: it is a claim
that beat's stall sweep re-drives, not a record to keep.

`finish` is the one place every outcome is recorded (done, skipped, dead-lettered), so what must
happen when a record finishes runs there: the listener the history was built with, after the
outcome is stored. The workers build theirs with workers/outcomes.py's (the tenant's admission
slot is freed, the console's counters move); the listener keeps this module free of Celery and
its callers free of admission.

A stage run writes its history `gathered` (workers/stage.py): its rows and its outcome in one
database transaction and its Redis updates in one pipeline when the run ends, before the next
stage is sent, instead of a transaction and a round trip per row (issue #19); a flush gathers
the history of every stage it finishes (workers/batching/resume.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, cast

import redis

from schemas.history import HistoryEvent
from schemas.wire import dumps, loads
from workers import keys
from workers.store import Database, get_database

Outcome = Literal["created", "updated", "voided", "deleted", "skipped", "failed", "duplicate"]
# what a stage did in Xero -> the record's outcome; anything else (e.g. unchanged) is a skip
ACTION_OUTCOMES: dict[str, Outcome] = {
    "created": "created",
    "adopted": "created",
    "updated": "updated",
    "voided": "voided",
    "deleted": "deleted",
}


def outcome_of(action: str | None) -> Outcome:
    return ACTION_OUTCOMES.get(action or "", "skipped")


def record_key(connection: str, module: str, record_id: str) -> str:
    return f"{connection}:{module}:{record_id}"


def inflight_key(connection: str) -> str:
    """Hash: record key -> the job of every record in flight (accepted, not finished)."""
    return keys.INFLIGHT(connection)


def progress_key(connection: str) -> str:
    """Sorted set: record key -> when it last moved (or until when it is meant to wait)."""
    return keys.PROGRESS(connection)


# called as listener(redis_client, connection, key) after a record's outcome is stored; it must
# not raise: the outcome is already recorded and the caller's stage is done
FinishListener = Callable[[redis.Redis, str, str], None]


@dataclass
class _Gathered:
    """What a gathered stage run logged, to be written when it ends."""

    started: list[tuple[str, str, str, float]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    progress: dict[str, float] = field(default_factory=dict)  # record key -> its last score
    outcomes: list[tuple[str, str, str, str, str]] = field(default_factory=list)

    def join(self, other: _Gathered) -> None:
        """Take what another gathering logged, after what this one holds."""
        self.started += other.started
        self.rows += other.rows
        self.progress.update(other.progress)
        self.outcomes += other.outcomes


class RecordHistory:
    # the gathering open in this thread or task, with the history that writes it
    _gathering: ClassVar[ContextVar[tuple[RecordHistory, _Gathered] | None]] = ContextVar(
        "zxs_history_gathering", default=None
    )

    def __init__(
        self,
        redis_client: redis.Redis,
        database: Database | None = None,
        on_finish: FinishListener | None = None,
    ) -> None:
        self._redis = redis_client
        self._database = database
        self._on_finish = on_finish

    @contextmanager
    def gathered(self) -> Iterator[None]:
        """What this history, or another on the same Redis, database and listener, starts,
        logs, finishes or quiets inside (in this thread) is written when the block ends,
        raising or not, in the order it came: the rows and outcomes in one transaction, then
        the in-flight, progress and outcome updates in one Redis pipeline, then the finish
        listener. Within an outer block that writes where this history does, it is written
        when that one ends."""
        if self._pending is not None:
            yield
            return
        try:
            with self._collecting() as gathered:
                yield
        finally:
            self._write(gathered)

    @contextmanager
    def tentative(self) -> Iterator[None]:
        """What is logged inside counts only if the block ends without raising: it then joins
        the open gathering (or is written at once); a block that raises leaves nothing. A stage
        tried in another stage's task (workers/stage.py) that fails runs again as its own task,
        which logs the same rows again."""
        outer = self._pending
        with self._collecting() as gathered:
            yield
        if outer is None:
            self._write(gathered)
        else:
            outer.join(gathered)

    @contextmanager
    def _collecting(self) -> Iterator[_Gathered]:
        """A gathering of its own, the one this thread's writes join while the block runs."""
        gathered = _Gathered()
        token = self._gathering.set((self, gathered))
        try:
            yield gathered
        finally:
            self._gathering.reset(token)

    @property
    def _pending(self) -> _Gathered | None:
        """The gathering this history's writes join, if one is open and writes where it does."""
        open_one = self._gathering.get()
        if open_one is None:
            return None
        owner, gathered = open_one
        same = (
            owner._redis is self._redis
            and owner._database is self._database
            and owner._on_finish is self._on_finish
        )
        return gathered if same else None

    @contextmanager
    def _adding(self) -> Iterator[_Gathered]:
        """The open gathering a write joins, or one of its own that is written at once."""
        pending = self._pending
        gathered = pending if pending is not None else _Gathered()
        yield gathered
        if pending is None:
            self._write(gathered)

    @property
    def database(self) -> Database:
        return self._database or get_database()

    def start(self, connection: str, key: str, job: dict[str, Any]) -> None:
        """A job is in flight until it finishes; `stalled` finds the ones that stopped moving."""
        with self._adding() as gathered:
            gathered.started.append((connection, key, dumps(job), time.time()))

    def log(self, key: str, stage: str, event: HistoryEvent, **detail: Any) -> None:
        """Append to the record's history; for an in-flight record this counts as progress. An
        event not in `HistoryEvent` raises ValueError before anything is written."""
        event = HistoryEvent(event)
        row = {
            "connection": key.split(":", 1)[0],
            "record_key": key,
            "at": datetime.now(UTC).isoformat(),
            "stage": stage,
            "event": event.value,
            "detail": dumps(detail),
        }
        with self._adding() as gathered:
            gathered.rows.append(row)
            gathered.progress[key] = time.time()

    def quiet_until(self, key: str, until: float) -> None:
        """The record is meant to wait (e.g. parked for Xero's next day): not stalled before."""
        with self._adding() as gathered:
            gathered.progress[key] = until  # the last word on the record's score, as in order

    def entries(self, key: str) -> list[dict[str, Any]]:
        return self.database.history(key)

    def finish(self, connection: str, key: str, outcome: Outcome, detail: str = "") -> None:
        """The record's final outcome for this event (read by the demo and by status)."""
        with self._adding() as gathered:
            gathered.outcomes.append(
                (connection, key, outcome, detail, datetime.now(UTC).isoformat())
            )

    def _write(self, gathered: _Gathered) -> None:
        """Rows and outcomes in one transaction, then Redis: records put in flight, progress
        moved (only for records in flight: `xx`), finished records out of flight, then the
        listener for each."""
        if not (gathered.started or gathered.rows or gathered.progress or gathered.outcomes):
            return
        self.database.record_history(gathered.rows, gathered.outcomes)
        if not (gathered.started or gathered.outcomes) and len(gathered.progress) == 1:
            [(key, score)] = gathered.progress.items()
            self._redis.zadd(_progress(key), {key: score}, xx=True)
            return
        # a start and a finish are atomic, as they were alone
        pipe = self._redis.pipeline(transaction=bool(gathered.started or gathered.outcomes))
        for connection, key, job, at in gathered.started:
            pipe.hset(inflight_key(connection), key, job)
            pipe.zadd(progress_key(connection), {key: at})
        for key, score in gathered.progress.items():
            pipe.zadd(_progress(key), {key: score}, xx=True)
        for connection, key, outcome, detail, _ in gathered.outcomes:
            pipe.hset(keys.OUTCOMES(connection), key, dumps([outcome, detail]))
            pipe.hdel(inflight_key(connection), key)
            pipe.zrem(progress_key(connection), key)
        pipe.execute()
        if self._on_finish is not None:
            for connection, key, *_ in gathered.outcomes:
                self._on_finish(self._redis, connection, key)

    def stalled(self, connection: str, idle_seconds: float) -> list[tuple[str, dict[str, Any]]]:
        """In-flight records with no progress for `idle_seconds`, with their jobs."""
        keys = cast(
            list[str],
            self._redis.zrangebyscore(progress_key(connection), "-inf", time.time() - idle_seconds),
        )
        if not keys:
            return []
        jobs = cast(list[str | None], self._redis.hmget(inflight_key(connection), keys))
        return [(key, loads(job)) for key, job in zip(keys, jobs, strict=True) if job]

    def outcomes(self, connection: str) -> dict[str, tuple[str, str]]:
        raw = cast(dict[str, str], self._redis.hgetall(keys.OUTCOMES(connection)))
        return {k: (loads(v)[0], loads(v)[1]) for k, v in raw.items()}


def _progress(key: str) -> str:
    return progress_key(key.split(":", 1)[0])
