"""Dead-lettering: a job that failed for good is kept with its full payload and reported.

Nothing is dropped silently: the letter (workers/deadletter.py) holds the job, the error in
plain words, the attempts and the traceback, and `zxsync.report_dead_letter` tells the
configured channels (workers/alerts.py). `zxsync dlq replay` sends it again once fixed.

Per-task option: `dead_letter` (default True). Off for tasks that carry no job to replay (beat's
ticks, flushes) and for the report task itself, which would otherwise report its own failures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from schemas.wire import dumps
from workers.deadletter import DeadLetterStore, describe
from workers.policies.base import Failure, Policy
from workers.redis import get_redis

if TYPE_CHECKING:
    from workers.policies.task import PolicyTask

REPORT_TASK = "zxsync.report_dead_letter"
log = structlog.get_logger("zxsync.stage")


class DeadLetter(Policy):
    def on_failure(self, task: PolicyTask, failure: Failure) -> None:
        if not task.dead_letter:
            return
        failure.letter = DeadLetterStore(get_redis()).add(
            stage=task.name,
            job=failure.job,
            exc=failure.exc,
            attempts=task.request.retries + 1,
            payload=dumps(failure.payload),
            traceback=failure.traceback,
        )
        task.app.send_task(REPORT_TASK, args=[failure.letter.id])
        kind, message, hint, _ = describe(failure.exc)
        log.error(
            "stage.dead_letter",
            stage=task.name,
            connection=failure.letter.connection,
            record=failure.letter.record_id,
            kind=kind,
            error=message,
            hint=hint,
            dead_letter=failure.letter.id,
        )
