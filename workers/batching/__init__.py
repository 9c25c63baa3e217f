"""Per-tenant batching: elements wait in Redis and a flush task sends many per request.

Xero allows 60 calls a minute per tenant but takes up to 50 elements per request (Xero's
"requests and responses" guide recommends at most 50), and Zoho takes 100 records per update;
a burst costs the fewest calls when stages of many documents share requests.

A stage that needs a write raises `AwaitingBatch(kind, {element id: payload})`. The stage
middleware (workers/stage.py) adds the elements to the connection's buffer for that kind, with
the task's resume signature (same task, same message, the rest of its chain), and the task ends.
`zxsync.flush_batch` (one flusher per kind and connection at a time) claims up to `size`
elements (and more batches while more are due, sent together: `ZXS_FLUSH_BATCHES`) once the
buffer is full, every job the connection has in flight or at the door waits in
it (nothing more can come, so a lone event goes at once), or its oldest element waited
`max_wait` (longer while the connection has a backlog of more than a batch: then requests are
what is scarce); the kind's handler (tasks/batch_handlers/, beside the stages) makes the calls
and stores the links; then the flusher finishes each waiting stage with its elements' outcomes
and sends the next stage of its chain, or, when that stage cannot go on (its element's error,
another wait), sends the waiting task again, to be dead-lettered alone with its full payload or
to wait again.

Why not celery-batches: it holds requests in worker memory and acks a batch as a whole after
the flush, whatever happened to each item, and has no chain support. Here an element
stays in Redis until its answer is stored. The flusher's lock has a short lease that a thread
renews while it works, so a killed flusher frees the buffer within seconds; elements still
claimed when the next flusher takes the lock are a dead flusher's, and come back as *suspect*
(an earlier request may have created
them), which handlers look up before creating. A waiter is resumed at most once per element
outcome (a marker per waiting task id), so a document waiting on several elements continues once.

Issue #22: a flush holds a fencing token (`Flush`), checked by the one Lua script that writes
its marks and links, so a flusher whose lease expired writes nothing and sends no create. A
create leaves a mark on each of its elements (key, time, the request's ids and bodies' digests)
until Xero's answer for the element is stored or a lookup told what Xero holds: whatever brings
the element back finds it a suspect. `plan_suspects` sends an unanswered request again under its
key while Xero keeps it, else looks its elements up no sooner than the lookup margin. After a
Redis restart or failover every buffered element is a suspect (`Buffer.suspect_after_restart`).

A rate-limited batch goes back to the buffer untouched and the connection's buffer holds until
Retry-After; the waiting documents stay in Redis, not in worker memory, and other tenants'
flushes are not delayed. `zxsync.sweep_batches` (beat) re-triggers any buffer whose trigger was
lost with a killed worker.

The rooms: `kinds` (what can be batched, handler registry), `buffer` (the buffer and its Lua),
`policy` (when a flush is due, and its trigger), `suspects` (elements Xero may hold already),
`fence` (a flusher's fenced writes and marks), `flush` (the flush task), `resume` (waiting
stages and their chains), `sweep` (beat's re-trigger). Keys: workers/keys.py. This module is
the face stages and handlers use.
"""

from __future__ import annotations

from workers.batching.buffer import Buffer, Element
from workers.batching.fence import Flush, LeaseLost, flush_key
from workers.batching.flush import flush_batch
from workers.batching.kinds import (
    CONTINUATIONS,
    KINDS,
    AwaitingBatch,
    Kind,
    Results,
    batch_handler,
    prefetched_by_flushes,
)
from workers.batching.policy import buffered, enqueue
from workers.batching.suspects import Later, plan_suspects, plan_unlinked
from workers.batching.sweep import sweep_batches
from workers.pipeline import Chained

__all__ = [
    "CONTINUATIONS",
    "KINDS",
    "AwaitingBatch",
    "Buffer",
    "Chained",
    "Element",
    "Flush",
    "Kind",
    "Later",
    "LeaseLost",
    "Results",
    "batch_handler",
    "buffered",
    "enqueue",
    "flush_batch",
    "flush_key",
    "plan_suspects",
    "plan_unlinked",
    "prefetched_by_flushes",
    "sweep_batches",
]
