"""Replay a dead letter once its cause is fixed: a new event through the door.

The original job re-enters as event `replay` with event id `replay-<letter id>`, so replaying the
same letter twice is one replay, and the pipeline re-reads the Zoho record (a fix made in Zoho
takes effect). Stages before the failed one find their links and cost no Xero calls, so the job
effectively re-enters at the failed stage; the invoice stage looks Xero up before creating on a
replay, since Xero forgets idempotency keys after 6 minutes.
"""

from __future__ import annotations

from schemas.jobs import SyncJob
from schemas.wire import loads
from workers.deadletter import DeadLetter, DeadLetterStore
from workers.pipeline import INGEST_TASK, send_job, submit


def replay(letter: DeadLetter, store: DeadLetterStore, by: str = "") -> str:
    """Enqueue the letter's job again (the letter is closed as replayed by `by`); returns the
    event id used."""
    payload = loads(letter.payload)
    if letter.stage == INGEST_TASK:
        # a rejected job is sent as it came: only a fixed configuration can make it pass now
        send_job(INGEST_TASK, [payload])
        event_id = str(payload.get("event_id", "")) if isinstance(payload, dict) else ""
    else:
        job = SyncJob.model_validate(payload["job"])
        event_id = f"replay-{letter.id}"
        replayed = job.model_copy(update={"event": "replay", "event_id": event_id})
        submit(replayed)
    store.mark_replayed(letter, by=by)
    return event_id
