"""Rate-limited stages: rescheduled without spending attempts, or parked until the next day.

A rate limit is not a failure: a stage that met one is sent again with the wait as countdown
and the same attempt number, so a busy tenant never exhausts a job's retries. A daily limit
(Xero's `X-Rate-Limit-Problem: day`, or the local daily budget) waits hours; as a Celery
countdown that would be redelivered every `visibility_timeout` (Redis redelivers an unacked
message counted from its delivery, not its ETA: kombu #337, celery #2599), so the task is
parked in the Redis sorted set `zxs:deferred`, scored by when it is due, and the beat task
`zxsync.release_deferred` (`celery -A workers.app beat`) sends it again then.

A rescheduled task gets a new task id: it is a new delivery, not the redelivery of one that
killed its worker (which the poison policy, workers/policies, counts per task id and attempt).

A parked item keeps the stage name, the full stage message and the task's signature with the
rest of its chain, so it resumes at the same stage; it resumes as a retry (attempt >= 1), so the
invoice stage looks the document up before creating it, Xero's 6-minute idempotency window being
long gone by then.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, cast

import structlog
from celery import current_task
from celery.exceptions import Ignore
from kombu.utils.uuid import uuid

from schemas.errors import RateLimited
from schemas.history import HistoryEvent
from schemas.wire import dumps, loads
from workers import keys
from workers.app import app
from workers.history import RecordHistory, record_key
from workers.policies import HOUSEKEEPING
from workers.policies.retry import rate_limit_wait
from workers.redis import get_redis
from workers.settings import get_settings

RELEASE_BATCH = 500
log = structlog.get_logger("zxsync.deferral")


def reschedule(exc: RateLimited) -> None:
    """Inside a task: send it again after the wait (or park it) and end this run (Ignore).
    Outside a task there is nothing to reschedule, and this returns."""
    task = current_task
    if not task or not task.request.id:  # a Proxy: falsy outside a task
        return
    request = task.request
    message: Any = request.args[0] if request.args else {}
    job = message.get("job", message) if isinstance(message, dict) else {}
    key = record_key(str(job.get("connection")), str(job.get("module")), str(job.get("record_id")))
    history = RecordHistory(get_redis())
    wait = rate_limit_wait(exc)
    if exc.problem.startswith("day") or wait > get_settings().zxs_retry_backoff_max:
        due = time.time() + wait
        signature = task.signature_from_request(retries=max(1, request.retries), task_id=uuid())
        park(task.name, message, dict(signature), due, str(exc))
        history.log(key, task.name, HistoryEvent.DEFERRED, error=str(exc), until=_iso(due))
        history.quiet_until(key, due)
        log.warning("stage.deferred", stage=task.name, record=key, until=_iso(due))
    else:
        task.signature_from_request(
            countdown=wait, retries=request.retries, task_id=uuid()
        ).apply_async()
        history.log(
            key, task.name, HistoryEvent.THROTTLED, error=str(exc), countdown=round(wait, 2)
        )
    raise Ignore()


def park(stage: str, message: Any, signature: dict[str, Any], due: float, reason: str) -> None:
    item = {
        "stage": stage,
        "message": message,
        "signature": signature,
        "reason": reason,
        "parked_at": datetime.now(UTC).isoformat(),
    }
    get_redis().zadd(keys.DEFERRED(), {dumps(item): due})


def parked() -> list[tuple[dict[str, Any], float]]:
    """Every parked item with its due time (epoch seconds), soonest first."""
    raw_rows = get_redis().zrange(keys.DEFERRED(), 0, -1, withscores=True)
    rows = cast(list[tuple[str, float]], raw_rows)
    return [(loads(raw), score) for raw, score in rows]


@app.task(name="zxsync.release_deferred", **HOUSEKEEPING)
def release_deferred() -> int:
    """Send every parked task that is due; sent before removed, so a crash cannot lose one
    (a duplicate is harmless: every stage is idempotent)."""
    redis_client = get_redis()
    lock = redis_client.lock(keys.DEFERRED_LOCK(), timeout=300, blocking_timeout=0)
    if not lock.acquire():
        return 0
    released = 0
    try:
        due = cast(
            list[str],
            redis_client.zrangebyscore(
                keys.DEFERRED(), "-inf", time.time(), start=0, num=RELEASE_BATCH
            ),
        )
        for raw in due:
            app.signature(loads(raw)["signature"]).apply_async()
            released += int(redis_client.zrem(keys.DEFERRED(), raw))
    finally:
        lock.release()
    if released:
        log.info("deferred.released", count=released)
    return released


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()
