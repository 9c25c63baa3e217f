"""The stage middleware: what every stage task does around its own work.

A stage is a plain function `(StageMessage, StageContext) -> StageMessage`. This module wraps it
as a Celery task and adds, once for all stages: parsing the message, passing skipped jobs
through, the history log, retries on transient errors (workers/retry.py) and dead-lettering on
permanent failure or exhausted retries (workers/deadletter.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from billiard.einfo import ExceptionInfo
from celery import Task
from kombu.utils.uuid import uuid

from schemas.errors import PoisonMessage, RefusedInBatch, SyncError
from schemas.jobs import StageMessage
from schemas.wire import dumps
from workers import keys
from workers.app import app
from workers.batching import CONTINUATIONS, AwaitingBatch, enqueue
from workers.context import StageContext, build_context
from workers.deadletter import DeadLetterStore, describe
from workers.history import RecordHistory, record_key
from workers.redis import get_redis
from workers.retry import retry_countdown, should_retry
from workers.settings import get_settings

StageFn = Callable[[StageMessage, StageContext], StageMessage]
log = structlog.get_logger("zxsync.stage")


class StageTask(Task):  # type: ignore[misc]
    """Base class of every pipeline task: retry policy, history and dead letters."""

    abstract = True

    def context_for(self, connection: str) -> StageContext:
        delivery = self.request.delivery_info or {}
        return build_context(connection, self.request.retries, bool(delivery.get("redelivered")))

    def count_delivery(self) -> None:
        """Refuse a job that keeps killing its worker.

        With reject-on-worker-lost, Celery requeues a task whose process died, so one that
        crashes its worker every time would loop forever (celery PR #6103). Deliveries of the
        same attempt are counted in Redis; past the budget the job is dead-lettered instead.
        """
        key = keys.DELIVERIES(self.request.id, self.request.retries)
        pipe = get_redis().pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, 24 * 3600)
        deliveries = int(pipe.execute()[0])
        budget = get_settings().zxs_max_deliveries
        if deliveries > budget:
            raise PoisonMessage(
                f"delivered {deliveries} times and its worker died each time",
                hint="The job crashes or exhausts its worker (memory, time limit): inspect the "
                "payload and traceback before replaying it.",
            )

    def retry_or_raise(self, exc: BaseException, ctx: StageContext, key: str) -> None:
        """Schedule the next attempt for a transient error; otherwise let it fail."""
        if not should_retry(exc) or self.request.retries >= self.max_retries:
            return
        countdown = retry_countdown(exc, self.request.retries, ctx.settings.zxs_retry_backoff_max)
        ctx.history.log(key, self.name, "retry", error=str(exc), countdown=round(countdown, 1))
        log.warning(
            "stage.retry",
            stage=self.name,
            record=key,
            error=str(exc),
            attempt=self.request.retries + 1,
            countdown=countdown,
        )
        raise self.retry(exc=exc, countdown=countdown)

    def await_batch(self, wait: AwaitingBatch, ctx: StageContext, key: str) -> None:
        """Park this stage in the tenant's buffer with what resumes it: the same task and
        message (and the rest of its chain) under a new task id, without batch results."""
        args = (wait.carry,) if wait.carry is not None else None
        resume = self.signature_from_request(
            args=args, task_id=uuid(), retries=self.request.retries, kwargs={}
        )
        enqueue(wait.kind, ctx.connection.name, wait.elements, resume)
        ctx.history.log(key, self.name, "batched", kind=wait.kind, elements=len(wait.elements))

    def on_failure(
        self,
        exc: BaseException,
        task_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        einfo: ExceptionInfo,
    ) -> None:
        """Dead-letter the job with its full payload; nothing is dropped silently."""
        payload = args[0] if args else kwargs
        job = payload.get("job", payload) if isinstance(payload, dict) else {}
        job = job if isinstance(job, dict) else {}
        redis_client = get_redis()
        letter = DeadLetterStore(redis_client).add(
            stage=self.name,
            job=job,
            exc=exc,
            attempts=self.request.retries + 1,
            payload=dumps(payload),
            traceback=str(einfo),
        )
        kind, message, hint, _ = describe(exc)
        key = record_key(letter.connection, letter.module, letter.record_id)
        history = RecordHistory(redis_client)
        history.log(key, self.name, "dead_letter", error=message, kind=kind, dead_letter=letter.id)
        history.finish(letter.connection, key, "failed", message)
        app.send_task("zxsync.report_dead_letter", args=[letter.id])
        log.error(
            "stage.dead_letter",
            stage=self.name,
            record=key,
            kind=kind,
            error=message,
            hint=hint,
            dead_letter=letter.id,
        )


def raise_batch_error(batch: dict[str, Any] | None) -> None:
    """A flush that refused one of this stage's elements resumes it with that element's error:
    raised here, the stage fails like any other and is dead-lettered alone."""
    for error in ((batch or {}).get("errors") or {}).values():
        hint, field = error["hint"] or None, error["field"] or None
        raise RefusedInBatch(error["kind"], error["message"], hint=hint, field=field)


def stage(name: str) -> Callable[[StageFn], Task]:
    """Register a stage function as the Celery task `name` with the shared middleware."""

    def register(fn: StageFn) -> Task:
        options = {
            "name": name,
            "base": StageTask,
            "bind": True,
            "max_retries": get_settings().zxs_max_retries,
        }

        @app.task(**options)
        def run(
            task: StageTask, message: dict[str, Any], batch: dict[str, Any] | None = None
        ) -> dict[str, Any] | None:
            task.count_delivery()
            msg = StageMessage.model_validate(message)
            if msg.skipped_reason:
                return message
            key = _record_key(msg)
            ctx = task.context_for(msg.job.connection)
            ctx.batch = batch
            with _bound(name, key, ctx):
                try:
                    raise_batch_error(batch)
                    result = fn(msg, ctx)
                except AwaitingBatch as wait:
                    task.await_batch(wait, ctx, key)
                    # resumed by the flush (workers/batching/) with the rest of its chain: this
                    # run ends without it; returning, not raising Ignore, spares the tracer an
                    # ExceptionInfo and a formatted traceback per parked stage (issue #19)
                    task.request.chain = task.request.callbacks = None
                    return None
                except SyncError as exc:
                    task.retry_or_raise(exc, ctx, key)
                    raise
            return _done(name, result, ctx, key)

        def finish_here(
            message: dict[str, Any], batch: dict[str, Any], attempt: int
        ) -> dict[str, Any] | None:
            """Finish the stage in the flusher's process once its elements are written; None
            when it cannot go on so (it would fail or wait again): its task then runs as usual,
            with the retries and dead letters above."""
            if batch.get("errors"):
                return None
            msg = StageMessage.model_validate(message)
            key = _record_key(msg)
            ctx = build_context(msg.job.connection, attempt)
            ctx.batch = batch
            with _bound(name, key, ctx):
                try:
                    result = fn(msg, ctx)
                except Exception:  # the task's own run meets it again and handles it
                    log.debug("stage.resume_as_task", stage=name, record=key, exc_info=True)
                    return None
            return _done(name, result, ctx, key)

        CONTINUATIONS[name] = finish_here
        run.__doc__ = fn.__doc__
        return run

    return register


def _record_key(msg: StageMessage) -> str:
    return record_key(msg.job.connection, msg.job.module, msg.job.record_id)


def _bound(name: str, key: str, ctx: StageContext) -> Any:
    """The stage's log context, restored afterwards (a flusher finishes many stages)."""
    return structlog.contextvars.bound_contextvars(
        connection=ctx.connection.name, record=key, stage=name, attempt=ctx.attempt + 1
    )


def _done(name: str, result: StageMessage, ctx: StageContext, key: str) -> dict[str, Any]:
    """Log how the stage ended; a skip ends the record's run here."""
    if result.skipped_reason:
        ctx.history.log(key, name, "skipped", detail=result.skipped_reason)
        ctx.history.finish(ctx.connection.name, key, "skipped", result.skipped_reason)
    else:
        ctx.history.log(key, name, "done")
    return result.model_dump(mode="json")
