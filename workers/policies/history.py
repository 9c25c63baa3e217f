"""History: a record's retries and its failure are in its history, and a failure ends its run.

Operators ask "what happened to invoice X?" (workers/history.py): a retry is logged with its
error and countdown, a dead letter with its id, and the record's outcome becomes `failed`, which
frees its tenant's admission slot (workers/outcomes.py). Runs whose message names no job (beat's
ticks) leave no history.

No option: it follows the task's message, and `dead_letter` (no letter, no failed outcome).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from schemas.history import HistoryEvent
from workers.deadletter import describe
from workers.history import record_key
from workers.outcomes import record_history
from workers.policies.base import Failure, Policy, job_of
from workers.redis import get_redis

if TYPE_CHECKING:
    from workers.policies.task import PolicyTask

log = structlog.get_logger("zxsync.stage")


class History(Policy):
    def on_retry(self, task: PolicyTask, exc: BaseException, countdown: float) -> None:
        job = job_of(task.request.args[0] if task.request.args else None)
        if not job.get("connection"):
            return
        key = record_key(
            str(job["connection"]), str(job.get("module", "")), str(job.get("record_id", ""))
        )
        record_history(get_redis()).log(
            key, task.name, HistoryEvent.RETRY, error=str(exc), countdown=round(countdown, 1)
        )
        log.warning(
            "stage.retry",
            stage=task.name,
            record=key,
            error=str(exc),
            attempt=task.request.retries + 1,
            countdown=countdown,
        )

    def on_failure(self, task: PolicyTask, failure: Failure) -> None:
        letter = failure.letter
        if letter is None:
            return
        kind, message, _, _ = describe(failure.exc)
        key = record_key(letter.connection, letter.module, letter.record_id)
        history = record_history(get_redis())
        history.log(
            key,
            task.name,
            HistoryEvent.DEAD_LETTER,
            error=message,
            kind=kind,
            dead_letter=letter.id,
        )
        history.finish(letter.connection, key, "failed", message)
