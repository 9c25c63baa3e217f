"""Which stages a job goes through, as a Celery chain of independent tasks.

Tasks are named, not imported, so stages stay independent; a chain (not a chord: chords on
Redis have long-open bugs, celery #4207 and #3363) passes each stage's StageMessage to the
next. Replay can start the chain at any stage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from celery import chain

from schemas.connection import Connection
from schemas.errors import InvalidJob
from schemas.jobs import BACKFILL_EVENT_PREFIX, Event, StageMessage, SyncJob, is_backfill
from workers import catalog, door, keys
from workers.app import PRIORITY_STEPS, app
from workers.history import inflight_key, record_key
from workers.redis import get_redis
from workers.settings import get_settings

INGEST_TASK = "zxsync.ingest"
PRIORITY_BAND = 50  # jobs in flight per priority step
LOWEST = PRIORITY_STEPS[-1]  # `zxsync backfill`'s jobs, at every stage
DOOR_TTL_SECONDS = 3600  # a count a lost message left behind fades after an hour without jobs

SALES_MODULES = ("Invoices", "Quotes", "Sales_Orders")
# the chains, in the order workers/catalog.py declares their stages
SALES_STAGES = catalog.chain(catalog.SALES)
PURCHASE_STAGES = catalog.chain(catalog.PURCHASE)
PIPELINES = {**dict.fromkeys(SALES_MODULES, SALES_STAGES), "Purchase_Orders": PURCHASE_STAGES}


# stages a connection's settings make a pass-through, left out of its jobs' chains: a hop costs
# a queue round trip, an ack and a history row per document, a good part of a burst's CPU
# (issue #19). The setting is read when a job enters its chain.
PASSED_THROUGH: dict[str, Callable[[Connection], bool]] = {
    "zxsync.invoice_send": lambda connection: connection.sender == "none",
}


def stages_for(module: str) -> tuple[str, ...]:
    """The pipeline of a module; empty when the module has none yet."""
    return PIPELINES.get(module, ())


def stages_of(job: SyncJob, from_stage: str | None = None) -> tuple[str, ...]:
    """The stages this job goes through (from `from_stage` on), less those its connection makes
    pass-throughs; an unknown connection keeps them all (its first stage says what is wrong)."""
    stages = stages_for(job.module)
    if from_stage:
        stages = stages[stages.index(from_stage) :]
    try:
        connection = get_settings().connection(job.connection)
    except InvalidJob:
        return stages
    return tuple(s for s in stages if not (s in PASSED_THROUGH and PASSED_THROUGH[s](connection)))


@dataclass(frozen=True)
class Chained:
    """Where a chain stands: the message for its next stage (None: a stage of it waits on a
    batch), the rest of the chain as Celery keeps it (next stage last), and the ids of the
    task it came from (its id and root id)."""

    message: dict[str, Any] | None
    chain: list[dict[str, Any]]
    ids: tuple[str | None, str | None]


ChainHere = Callable[[Chained], Chained]  # runs a chain's next stages here (workers/stage.py)


def start_pipeline(
    message: StageMessage, from_stage: str | None = None, run_here: ChainHere | None = None
) -> None:
    """Enqueue the chain of stages for this message, from `from_stage` on, at its tenant's
    priority (every stage of the chain, and its resumes after a batch, keep it); with
    `run_here`, its first stages run in this task while they can (the door, issue #19)."""
    job = message.job
    stages = stages_of(job, from_stage)
    backfill = is_backfill(job)  # history goes last: live events overtake it
    options = {
        "priority": LOWEST if backfill else tenant_priority(job.connection),
        # what Celery shows of the arguments (message headers, task events, Flower, logs): the
        # record, not a repr of the whole document rebuilt at every hop (issue #19)
        "argsrepr": repr((record_key(job.connection, job.module, job.record_id),)),
    }
    steps = [app.signature(name, options=options) for name in stages]
    payload = message.model_dump(mode="json")
    if run_here is not None:
        send_rest(
            run_here(Chained(payload, [dict(step) for step in reversed(steps)], (None, None)))
        )
        return
    steps[0].args = (payload,)
    chain(*steps).apply_async()


def send_rest(here: Chained) -> None:
    """Send the next stage of what is left of a chain, with the rest of it, as Celery's tracer
    sends a chain's next step once one returns (tests/test_batching.py holds it to that)."""
    if here.chain and here.message is not None:
        step = here.chain[-1]
        app.signature(step).apply_async(
            (here.message,),
            chain=here.chain[:-1] or None,
            parent_id=here.ids[0],
            root_id=here.ids[1],
            priority=(step.get("options") or {}).get("priority"),
        )


def tenant_priority(connection: str) -> int:
    """Redis priority (0 first) from how much the tenant has in flight.

    Stage queues are FIFO: without this, one event of a quiet tenant waits behind every job a
    bursting tenant has admitted. kombu keeps one list per priority step and pops the higher
    steps first across all queues, so a tenant's first `PRIORITY_BAND` jobs go at step 0 and a
    burst's later ones at lower steps: the quiet tenant overtakes the burst at every stage.
    """
    return _step(int(get_redis().hlen(inflight_key(connection))))


def door_priority(job: dict[str, Any]) -> int:
    """The priority of a job sent to the door: its tenant's jobs already at the door (sent, not
    yet taken in) and in flight. The door queue is shared and FIFO too, so without it a quiet
    tenant's event waits until the door has taken in a burst of thousands (in the fairness
    bench B's p99 was 8 s while A's 1,000 went through the door). The job is journaled in the
    same round trip (workers/door.py)."""
    connection = job["connection"]
    pipe = get_redis().pipeline(transaction=False)
    pipe.incr(door_key(connection))
    pipe.expire(door_key(connection), DOOR_TTL_SECONDS)
    pipe.hlen(inflight_key(connection))
    door.journal(pipe, job)
    at_door, _, inflight, *_ = pipe.execute()
    return _step(int(at_door) - 1 + int(inflight))


def taken_in(payload: Any, first: bool = True) -> None:
    """The door took a job in: out of the door's journal, and (on its first delivery) one fewer
    waits at its tenant's door; one round trip."""
    connection = payload.get("connection") if isinstance(payload, dict) else None
    if not (isinstance(connection, str) and connection):
        return
    redis_client = get_redis()
    pipe = redis_client.pipeline(transaction=False)
    door.forget(pipe, connection, payload.get("event_id"))
    if first:
        pipe.decr(door_key(connection))
    at_door = pipe.execute()[-1]
    if first and int(at_door) < 0:
        redis_client.set(door_key(connection), 0, ex=DOOR_TTL_SECONDS)  # sent before counting


def door_key(connection: str) -> str:
    return keys.DOOR(connection)


def _step(load: int) -> int:
    return PRIORITY_STEPS[min(max(load, 0) // PRIORITY_BAND, len(PRIORITY_STEPS) - 1)]


def send_job(task: str, args: list[Any]) -> None:
    """Send a relay's job (`app.send_task`'s shape): to the door at its tenant's priority."""
    job = args[0] if args else None
    if task == INGEST_TASK and isinstance(job, dict) and isinstance(job.get("connection"), str):
        priority = door_priority(job)  # also counts and journals the job at its door
        if str(job.get("event_id", "")).startswith(BACKFILL_EVENT_PREFIX):
            priority = LOWEST  # `zxsync backfill`: history goes last
        app.send_task(task, args=args, priority=priority)
    else:
        app.send_task(task, args=args)


def submit(job: SyncJob) -> None:
    """Enqueue a job at the door exactly as a relay does (the one way in for Python callers)."""
    send_job(INGEST_TASK, [job.model_dump(mode="json")])


def submit_records(
    connection: str,
    record_ids: Iterable[str],
    event_prefix: str,
    *,
    module: str = "Invoices",
    event: Event = "insert",
) -> None:
    """One job per record through the door, event id `<prefix>-<record id>` (the demo, the
    chaos run, benches and tests send their events so)."""
    for record_id in record_ids:
        submit(
            SyncJob(
                connection=connection,
                module=module,
                record_id=record_id,
                event=event,
                event_id=f"{event_prefix}-{record_id}",
            )
        )
