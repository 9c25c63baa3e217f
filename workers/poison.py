"""Messages Celery itself cannot run still land in the dead-letter queue, never dropped.

Celery logs and acks an undecodable message (wrong serializer, corrupt body) and rejects a
message naming an unknown task; both would vanish. A consumer subclass and two signal handlers
put the raw message, with the reason, in the dead-letter stream and raise the usual report.
"""

from __future__ import annotations

from typing import Any

from celery import signals
from celery.worker.consumer.consumer import Consumer

from schemas.errors import InvalidJob
from workers.deadletter import DeadLetterStore
from workers.redis import get_redis


def dead_letter_raw(stage: str, reason: str, message: Any) -> None:
    """Store a raw broker message with the reason it could not run, and report it."""
    body = message.body if message is not None else b""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    headers = getattr(message, "headers", None) or {}
    letter = DeadLetterStore(get_redis()).add(
        stage=stage,
        job={},
        exc=InvalidJob(reason, hint="Fix the relay that sent it; the raw message is kept here."),
        attempts=1,
        payload=text,
        traceback=f"content-type: {getattr(message, 'content_type', None)}; headers: {headers}",
    )
    from workers.app import app

    app.send_task("zxsync.report_dead_letter", args=[letter.id])


class DeadLetteringConsumer(Consumer):  # type: ignore[misc]
    """Celery's consumer, with undecodable messages dead-lettered before they are acked."""

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        dead_letter_raw("celery.decode", f"message could not be decoded: {exc}", message)
        super().on_decode_error(message, exc)


@signals.task_unknown.connect(weak=False)
def _unknown_task(name: str = "", message: Any = None, **_: Any) -> None:
    dead_letter_raw("celery.unknown_task", f"no task named '{name}'", message)


@signals.task_rejected.connect(weak=False)
def _rejected(message: Any = None, exc: Exception | None = None, **_: Any) -> None:
    dead_letter_raw("celery.rejected", f"not a task message: {exc}", message)
