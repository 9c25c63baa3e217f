"""The resume of the stages that waited on a flushed batch, and of their chains.

Each waiting task is resumed once with its elements' outcomes and errors (a marker per task id:
a document waiting on several elements continues once). A stage that would only read its
outcome is finished here and the next stage of its chain sent (`finish_waiting`,
`send_next`), as Celery's tracer sends a chain's next step; any other is sent again as its own
task. The history of the
stages a resume finishes is written in one transaction and one Redis pipeline (issue #19).
"""

from __future__ import annotations

from typing import Any

from celery.canvas import Signature

from schemas.errors import SyncError
from workers import keys
from workers.app import app
from workers.batching.buffer import Buffer
from workers.batching.kinds import CONTINUATIONS, Results
from workers.batching.policy import triggers_held
from workers.deadletter import describe
from workers.outcomes import record_history
from workers.pipeline import Chained, send_rest

RESUMED_TTL_SECONDS = 24 * 3600


def resume(buffer: Buffer, results: Results) -> None:
    """Send every waiting task again with its elements' outcomes and errors, once per task.

    Sent before the waiters are dropped: a crash in between resumes a task twice, which an
    idempotent stage shrugs off, rather than never.
    """
    remaining = dict(results)
    while remaining:
        with triggers_held():  # the stages parked here are no longer waiting in this buffer
            finished = _resume_waiting(buffer, remaining)
        remaining = {eid: result for eid, result in remaining.items() if eid not in finished}


def _resume_waiting(buffer: Buffer, remaining: Results) -> set[str]:
    """Resume the tasks waiting on these elements; the elements now done with."""
    waiting = buffer.waiters(list(remaining))
    merged: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for element_id, waiters in waiting.items():
        result = remaining[element_id]
        for waiter in waiters:
            _, news = merged.setdefault(waiter["options"]["task_id"], (waiter, {}))
            if isinstance(result, SyncError):
                news.setdefault("errors", {})[element_id] = error_payload(result)
            else:
                news.setdefault("outcomes", {})[element_id] = result.wire()
    markers = [keys.BATCH_RESUMED(task_id) for task_id in merged]
    seen = buffer.redis.pipeline()
    for marker in markers:
        seen.exists(marker)
    earlier = seen.execute()
    going_on: list[tuple[str, str, Signature, Chained | None]] = []
    # the history of the stages finished here, written in one go before their next stages
    # are sent (workers/history.py)
    with record_history(buffer.redis).gathered():
        for (task_id, (waiter, news)), marker, resumed in zip(
            merged.items(), markers, earlier, strict=True
        ):
            if resumed:
                continue  # resumed by an earlier batch: it has waited again under a new id
            signature = app.signature(waiter)
            signature.kwargs = {**signature.kwargs, "batch": {"kind": buffer.kind, **news}}
            going_on.append((task_id, marker, signature, finish_waiting(signature)))
    note = buffer.redis.pipeline()
    for task_id, marker, signature, finished_here in going_on:
        if finished_here is None:
            signature.apply_async()  # the stage runs as its own task
        else:
            send_next(signature, finished_here)
        note.set(marker, 1, ex=RESUMED_TTL_SECONDS)
        note.srem(buffer.key("waiting"), task_id)
    note.execute()
    return set(buffer.done({eid: len(waiters) for eid, waiters in waiting.items()}))


def finish_waiting(waiter: Signature) -> Chained | None:
    """The waiting stage finished here, with the stages after it that could (workers/stage.py):
    what is left of its chain, or None when it must run as its task. A resume only reads its
    outcome and passes the message on, so running it as a task of its own would cost a queue
    round trip, four task events and an ack per document and batch, which made a burst
    CPU-bound; `send_next` then sends its chain's next stage."""
    finish = CONTINUATIONS.get(waiter.task)
    options = waiter.options
    if finish is None or options.get("link") or options.get("chord"):
        return None
    chain = list(options.get("chain") or [])
    here = Chained(waiter.args[0], chain, (options.get("task_id"), options.get("root_id")))
    return finish(here, waiter.kwargs["batch"], int(options.get("retries") or 0))


def send_next(waiter: Signature, finished: Chained) -> None:
    """The next stage of a finished waiter's chain, sent as Celery's tracer sends it."""
    options = waiter.options
    here = Chained(
        finished.message, finished.chain, (options.get("task_id"), options.get("root_id"))
    )
    send_rest(here)


def error_payload(exc: SyncError) -> dict[str, Any]:
    kind, message, hint, field = describe(exc)
    return {"kind": kind, "message": message, "hint": hint, "field": field}
