"""A stage: what every pipeline stage does around its own work, beside the app's policies.

A stage is a plain function `(message, StageContext) -> StageMessage` whose first parameter's
type is its contract: a `StageMessage`, or a narrowed one (schemas/jobs.py) naming what earlier
stages guarantee. This module wraps it as a Celery task that parses the message into that type
(a message lacking a guaranteed field is a `ContractBroken`, dead-lettered with its payload),
passes skipped jobs through, logs how the stage ended (a run's history written together as it
ends: workers/history.py `gathered`), and parks the stage in a batch buffer and resumes it
(workers/batching.py). Retries, rate-limit deferral, poison, dead letters and time limits are
every task's, not a stage's (workers/policies).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar, get_type_hints

import structlog
from celery import Task
from kombu.utils.uuid import uuid
from pydantic import TypeAdapter, ValidationError

from schemas.errors import ContractBroken, RefusedInBatch
from schemas.history import HistoryEvent
from schemas.jobs import StageMessage
from workers.app import app
from workers.batching import CONTINUATIONS, AwaitingBatch, enqueue
from workers.context import StageContext, build_context
from workers.history import record_key
from workers.policies import PolicyTask

M = TypeVar("M", bound=StageMessage)
StageFn = Callable[[M, StageContext], StageMessage]
log = structlog.get_logger("zxsync.stage")


class StageTask(PolicyTask):
    """Base of the tasks that work on one connection's job: its context, and batch waits. The
    policies (retries, deferral, poison, dead letters, history, time limits) are the app's."""

    abstract = True

    def context_for(self, connection: str) -> StageContext:
        delivery = self.request.delivery_info or {}
        return build_context(connection, self.request.retries, bool(delivery.get("redelivered")))

    def await_batch(self, wait: AwaitingBatch, ctx: StageContext, key: str) -> None:
        """Park this stage in the tenant's buffer with what resumes it: the same task and
        message (and the rest of its chain) under a new task id, without batch results."""
        args = (wait.carry,) if wait.carry is not None else None
        resume = self.signature_from_request(
            args=args, task_id=uuid(), retries=self.request.retries, kwargs={}
        )
        enqueue(wait.kind, ctx.connection.name, wait.elements, resume)
        ctx.history.log(
            key, self.name, HistoryEvent.BATCHED, kind=wait.kind, elements=len(wait.elements)
        )


def raise_batch_error(batch: dict[str, Any] | None) -> None:
    """A flush that refused one of this stage's elements resumes it with that element's error:
    raised here, the stage fails like any other and is dead-lettered alone."""
    for error in ((batch or {}).get("errors") or {}).values():
        hint, field = error["hint"] or None, error["field"] or None
        raise RefusedInBatch(error["kind"], error["message"], hint=hint, field=field)


def contract(fn: Callable[..., Any]) -> TypeAdapter[Any]:
    """The parser of a stage's input: its first parameter's type, as annotated."""
    first = next(iter(inspect.signature(fn).parameters))
    return TypeAdapter(get_type_hints(fn, include_extras=True)[first])


def parse(name: str, adapter: TypeAdapter[M], message: dict[str, Any]) -> M:
    """The message as the stage's type; one lacking what an earlier stage guarantees fails as
    a ContractBroken naming the fields (the policies dead-letter it with its payload)."""
    try:
        return adapter.validate_python(message)
    except ValidationError as exc:
        tags = {"sale", "purchase", "cancel"}  # schemas/jobs.py `route`
        problems = [
            (".".join(str(p) for p in err["loc"] if p not in tags), err["msg"])
            for err in exc.errors()
        ]
        raise ContractBroken(
            f"{name} got a message without what the earlier stages guarantee: "
            + "; ".join(f"{where or 'message'}: {msg}" for where, msg in problems),
            field=problems[0][0],
            hint="A defect (or a message edited by hand): report it with the payload; replay "
            "the record from its first stage once fixed.",
        ) from None


def stage(name: str) -> Callable[[StageFn[M]], Task]:
    """Register a stage function as the Celery task `name` (the app's policies included)."""

    def register(fn: StageFn[M]) -> Task:
        adapter: TypeAdapter[M] = contract(fn)

        @app.task(name=name, base=StageTask, bind=True)
        def run(
            task: StageTask, message: dict[str, Any], batch: dict[str, Any] | None = None
        ) -> dict[str, Any] | None:
            if message.get("skipped_reason"):
                StageMessage.model_validate(message)  # a skip needs no more than the message
                return message
            msg = parse(name, adapter, message)
            key = _record_key(msg)
            ctx = task.context_for(msg.job.connection)
            ctx.batch = batch
            with _bound(name, key, ctx), ctx.history.gathered():
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
                return _done(name, result, ctx, key)  # its history written before the next

        def finish_here(
            message: dict[str, Any], batch: dict[str, Any], attempt: int
        ) -> dict[str, Any] | None:
            """Finish the stage in the flusher's process once its elements are written; None
            when it cannot go on so (it would fail or wait again): its task then runs as usual,
            with the app's policies (workers/policies)."""
            if batch.get("errors"):
                return None
            try:
                msg = parse(name, adapter, message)
            except ContractBroken:  # the task's own run meets it again and dead-letters it
                return None
            key = _record_key(msg)
            ctx = build_context(msg.job.connection, attempt)
            ctx.batch = batch
            with _bound(name, key, ctx), ctx.history.gathered():
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
        ctx.history.log(key, name, HistoryEvent.SKIPPED, detail=result.skipped_reason)
        ctx.history.finish(ctx.connection.name, key, "skipped", result.skipped_reason)
    else:
        ctx.history.log(key, name, HistoryEvent.DONE)
    return result.model_dump(mode="json")
