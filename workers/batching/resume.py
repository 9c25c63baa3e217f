"""The resume of the stages that waited on a flushed batch, and of their chains.

Each waiting task is resumed once with its elements' outcomes and errors (a marker per task id:
a document waiting on several elements continues once). A stage that would only read its
outcome is finished here and the next stage of its chain sent (`continue_chain`), as Celery's
tracer sends a chain's next step; any other is sent again as its own task.
"""

from __future__ import annotations

from typing import Any

from celery.canvas import Signature

from schemas.errors import SyncError
from workers import keys
from workers.app import app
from workers.batching.buffer import Buffer
from workers.batching.kinds import CONTINUATIONS, Results
from workers.deadletter import describe

RESUMED_TTL_SECONDS = 24 * 3600


def resume(buffer: Buffer, results: Results) -> None:
    """Send every waiting task again with its elements' outcomes and errors, once per task.

    Sent before the waiters are dropped: a crash in between resumes a task twice, which an
    idempotent stage shrugs off, rather than never.
    """
    remaining = dict(results)
    while remaining:
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
        note = buffer.redis.pipeline()
        for (task_id, (waiter, news)), marker, resumed in zip(
            merged.items(), markers, earlier, strict=True
        ):
            if resumed:
                continue  # resumed by an earlier batch: it has waited again under a new id
            signature = app.signature(waiter)
            signature.kwargs = {**signature.kwargs, "batch": {"kind": buffer.kind, **news}}
            if not continue_chain(signature):
                signature.apply_async()
            note.set(marker, 1, ex=RESUMED_TTL_SECONDS)
            note.srem(buffer.key("waiting"), task_id)
        note.execute()
        finished = buffer.done({eid: len(waiters) for eid, waiters in waiting.items()})
        remaining = {eid: result for eid, result in remaining.items() if eid not in finished}


def continue_chain(waiter: Signature) -> bool:
    """Finish the waiting stage here and send the next stage of its chain, as Celery's tracer
    would: a resume only reads its outcome and passes the message on, so running it as a task
    of its own costs a queue round trip, four task events and an ack per document and batch,
    which made a burst CPU-bound. False when the stage must run as its task after all."""
    finish = CONTINUATIONS.get(waiter.task)
    options = waiter.options
    if finish is None or options.get("link") or options.get("chord"):
        return False
    result = finish(waiter.args[0], waiter.kwargs["batch"], int(options.get("retries") or 0))
    if result is None:
        return False
    chain = list(options.get("chain") or [])
    if chain:
        app.signature(chain[-1]).apply_async(
            (result,),
            chain=chain[:-1] or None,
            parent_id=options.get("task_id"),
            root_id=options.get("root_id"),
            priority=options.get("priority"),
        )
    return True


def error_payload(exc: SyncError) -> dict[str, Any]:
    kind, message, hint, field = describe(exc)
    return {"kind": kind, "message": message, "hint": hint, "field": field}
