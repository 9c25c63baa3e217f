"""Everything that makes a stage safe to run twice, in one place.

- events: a relay's event id is claimed once, so the same webhook enqueued three times runs once
  (a redelivery of the claiming task itself still proceeds: the claim names the Celery task);
- pending: a change that arrives while a job of the same record has not read Zoho yet is
  coalesced into that job (the relay sends no second job; the job reads the latest record);
- links: Zoho id -> Xero id per connection, written as soon as Xero answers, read first by every
  stage, so a second run finds the document instead of creating it; they live in the database
  (workers/store), whose unique constraints refuse a second link or a second create's claim;
- locks: one worker at a time finds-or-creates the same contact, items or document;
- keys: Xero's Idempotency-Key, derived from the record and its content, so a retry within
  Xero's 6-minute window returns the first answer instead of a duplicate (FACTS.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import redis
from redis.exceptions import LockError
from redis.lock import Lock

from schemas.errors import Busy
from schemas.jobs import SyncJob
from schemas.links import INVOICE, L, LinkKind, TotalPair
from workers import keys
from workers.store import Database, get_database

LOCK_WAIT_SECONDS = 5
PENDING_SECONDS = 3600  # a coalescing mark outlives any job's wait before it reads Zoho


def pending_key(connection: str, module: str, record_id: str, event: str) -> str:
    """Marks that a job of this record has been sent and has not read the record yet: a change
    arriving meanwhile needs no job of its own (that job reads the latest record). Deletes are
    coalesced apart from other changes (a delete job confirms the deletion, it syncs nothing)."""
    kind = "delete" if event == "delete" else "change"
    return keys.PENDING(connection, module, record_id, kind)


def idempotency_key(*parts: str) -> str:
    """A stable Xero Idempotency-Key (at most 128 characters) for these parts."""
    return "zxs-" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


class IdempotencyStore:
    def __init__(
        self,
        redis_client: redis.Redis,
        event_ttl_seconds: int,
        lock_seconds: float = 60,
        database: Database | None = None,
    ) -> None:
        self._redis = redis_client
        self._event_ttl = event_ttl_seconds
        self._lock_seconds = lock_seconds
        self._database = database

    @property
    def database(self) -> Database:
        """The system of record (the process's own unless one was given)."""
        return self._database or get_database()

    def claim_event(self, job: SyncJob, task_id: str) -> bool:
        """True if this task owns the event (first claim, or its own redelivery)."""
        key = keys.EVENT(job.connection, job.event_id)
        if self._redis.set(key, task_id, nx=True, ex=self._event_ttl):
            return True
        return self._redis.get(key) == task_id

    def reading(self, job: SyncJob) -> None:
        """Called just before a job reads its record from Zoho: a change made from now on is
        not in what it reads, so the relay sends a job for it (workers/idempotency pending_key)."""
        self._redis.delete(pending_key(job.connection, job.module, job.record_id, job.event))

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold `name` for at most the lease; if busy after a short wait, raise Busy (retried
        with a countdown) rather than keep a worker waiting. A killed holder's lease expires."""
        lock = Lock(
            self._redis,
            keys.LOCK(name),
            timeout=self._lock_seconds,
            blocking_timeout=LOCK_WAIT_SECONDS,
        )
        if not lock.acquire():
            raise Busy(f"{name} is locked by another worker", hint="Retried automatically.")
        try:
            yield
        finally:
            with suppress(LockError):  # the lease expired while we worked: nothing to release
                lock.release()

    def link(self, kind: LinkKind[L], connection: str, zoho_id: str) -> L | None:
        return self.links(kind, connection, [zoho_id]).get(zoho_id)

    def links(self, kind: LinkKind[L], connection: str, zoho_ids: list[str]) -> dict[str, L]:
        raw = self.database.links(kind.name, connection, zoho_ids)
        return {zid: kind.parse(value) for zid, value in raw.items()}

    def set_links(self, kind: LinkKind[L], connection: str, values: dict[str, L]) -> None:
        wire = {zid: link.wire() for zid, link in values.items()}
        self.database.set_links(kind.name, connection, wire)

    def accept_total(self, connection: str, link_id: str) -> TotalPair | None:
        """Accept the total difference judged on this invoice link (Zoho and Xero totals as
        judged; a later change of either is judged anew); None when none stands."""
        link = self.link(INVOICE, connection, link_id)
        if link is None or link.total_differs is None:
            return None
        accepted = link.model_copy(update={"accepted_total": link.total_differs})
        self.set_links(INVOICE, connection, {link_id: accepted})
        return link.total_differs

    def forget_links(self, kind: LinkKind[L], connection: str, zoho_ids: list[str]) -> None:
        """Drop links Xero says are stale (archived contact, deleted item): looked up again."""
        self.database.forget_links(kind.name, connection, zoho_ids)
