"""A stage: what every pipeline stage does around its own work, beside the app's policies.

A stage is a plain function `(message, StageContext) -> StageMessage` whose first parameter's
type is its contract: a `StageMessage`, or a narrowed one (schemas/jobs.py) naming what earlier
stages guarantee. This module wraps it as a Celery task that parses the message into that type
(a message lacking a guaranteed field is a `ContractBroken`, dead-lettered with its payload),
passes skipped jobs through, logs how the stage ended (a run's history written together as it
ends: workers/history.py `gathered`), and parks the stage in a batch buffer and resumes it
(workers/batching.py). Retries, rate-limit deferral, poison, dead letters and time limits are
every task's, not a stage's (workers/policies).

A finished stage runs the next stages of its chain in the same task while it can (`go_on`,
issue #19): each broker hop costs a publish, a late ack, a task run and its policies, more CPU
than most stages' own work. A stage is run so only when this worker consumes its queue; one
that parks is parked with the rest of its chain as if it had run as its task; one that raises
leaves no history and is sent as its own task, which meets the error again under the app's
policies. A crash in between redelivers the first stage's message, and the stages, idempotent,
run again.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar, get_type_hints

import structlog
from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from kombu.utils.uuid import uuid
from pydantic import TypeAdapter, ValidationError

from schemas.errors import ContractBroken, RefusedInBatch
from schemas.history import HistoryEvent
from schemas.jobs import StageMessage
from workers.app import STAGE_QUEUES, app
from workers.batching import CONTINUATIONS, AwaitingBatch, Chained, enqueue
from workers.catalog import DEFAULT_QUEUE
from workers.context import CallsNotHere, StageContext, build_context
from workers.history import record_key
from workers.outcomes import record_history
from workers.policies import PolicyTask
from workers.redis import get_redis
from workers.settings import get_settings

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
                return go_on(task, message)
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
                # its history, and that of the stages run after it here, written before the
                # next stage is sent
                return go_on(task, _done(name, result, ctx, key))

        def run_here(
            message: dict[str, Any],
            batch: dict[str, Any] | None,
            attempt: int,
            redelivered: bool = False,
            calls: bool = True,
        ) -> dict[str, Any] | AwaitingBatch | None:
            """Run the stage outside its own task: its result, the batch it waits on, or None
            when it failed or, with `calls` off, would call Xero or Zoho (its history left
            unwritten): its task then runs as usual, with the app's policies, and meets the
            error again."""
            if message.get("skipped_reason"):
                return message  # passed on as its task would (it validates it there)
            try:
                msg = parse(name, adapter, message)
            except ContractBroken:  # the task's own run meets it again and dead-letters it
                return None
            key = _record_key(msg)
            ctx = build_context(msg.job.connection, attempt, redelivered)
            ctx.batch, ctx.calls = batch, calls
            with _bound(name, key, ctx):
                try:
                    with ctx.history.tentative():
                        return _done(name, fn(msg, ctx), ctx, key)
                except AwaitingBatch as wait:
                    return wait
                except SoftTimeLimitExceeded:
                    raise  # the task's time is up, not the stage's: its policies retry it
                except (Exception, CallsNotHere):  # its own run meets it again, and handles it
                    log.debug("stage.run_as_task", stage=name, record=key, exc_info=True)
                    return None

        def finish_here(waiter: Chained, batch: dict[str, Any], attempt: int) -> Chained | None:
            """Finish the stage in the flusher's process once its elements are written, and
            the stages after it that need no call to Xero or Zoho (a flusher must not wait on
            one call per document): what Celery sends next. None when the stage cannot finish
            so (it would fail or wait again): its task then runs."""
            if batch.get("errors") or waiter.message is None:
                return None
            result = run_here(waiter.message, batch, attempt, False, False)
            if not isinstance(result, dict):
                return None
            return run_on(Chained(result, waiter.chain, waiter.ids), calls=False)

        CONTINUATIONS[name] = finish_here
        RUN_HERE[name] = run_here
        run.__doc__ = fn.__doc__
        return run

    return register


StageHere = Callable[
    [dict[str, Any], dict[str, Any] | None, int, bool, bool],
    dict[str, Any] | AwaitingBatch | None,
]
RUN_HERE: dict[str, StageHere] = {}  # every stage, run outside its own task


def go_on(task: StageTask, message: dict[str, Any]) -> dict[str, Any] | None:
    """Run the next stages of the task's chain here while they can, and leave Celery the rest:
    the message for the stage it sends next, or None when a stage run here waits on a batch
    (parked with the rest of its chain, which the flush resumes)."""
    request = task.request
    redelivered = bool((request.delivery_info or {}).get("redelivered"))
    chain = list(request.chain or [])
    after = run_on(Chained(message, chain, (request.id, request.root_id)), redelivered)
    request.chain = after.chain or None
    if after.message is None:
        request.callbacks = None
    return after.message


def run_on(here: Chained, redelivered: bool = False, calls: bool = True) -> Chained:
    """Run the chain's next stages while they can run here: what is left for Celery to send,
    with the message for its next stage; no message when a stage waits on a batch (parked
    with the rest of the chain: the flush resumes it)."""
    if not get_settings().zxs_fused_stages:
        return here
    message, chain = here.message, list(here.chain)
    while chain and message is not None:
        step = chain[-1]
        options = step.get("options") or {}
        run_here = RUN_HERE.get(step["task"])
        if run_here is None or options.get("link") or not _served_here(step["task"]):
            break
        result = run_here(message, None, 0, redelivered, calls)
        if result is None:
            break  # sent as its own task, with the message it was given
        chain.pop()
        if isinstance(result, AwaitingBatch):
            _park(step, chain, message, result, here.ids)
            return Chained(None, [], here.ids)
        message = result
    return Chained(message, chain, here.ids)


def _served_here(name: str) -> bool:
    """The stage's queue is one this worker consumes (a worker started with `-Q` may leave a
    stage to another): the stage then runs where it would have been delivered."""
    queue = STAGE_QUEUES.get(name, DEFAULT_QUEUE)
    return queue in app.amqp.queues.consume_from


def _park(
    step: dict[str, Any],
    rest: list[dict[str, Any]],
    message: dict[str, Any],
    wait: AwaitingBatch,
    ids: tuple[str | None, str | None],
) -> None:
    """Park a stage run here as its own run would have parked: its task, the message it was
    given (or what it carries over the wait) and the rest of the chain, under a new task id."""
    resume = app.signature(step).clone(args=(wait.carry if wait.carry is not None else message,))
    resume.options.update(
        task_id=uuid(),
        chain=rest or None,
        parent_id=ids[0],
        root_id=ids[1],
        retries=0,
    )
    job = message["job"]
    enqueue(wait.kind, job["connection"], wait.elements, resume)
    key = record_key(job["connection"], job["module"], job["record_id"])
    record_history(get_redis()).log(
        key, step["task"], HistoryEvent.BATCHED, kind=wait.kind, elements=len(wait.elements)
    )


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
