"""Ingest: the door. Validate a relay's job, drop repeats of the same event, start the chain
(now if the tenant's window has room, else from its waiting room: workers/admission.py).

A job that breaks the contract or names an unknown connection is dead-lettered with its payload
and the field at fault (the dead-letter policy: workers/policies), never dropped.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from schemas.errors import InvalidJob
from schemas.history import HistoryEvent
from schemas.jobs import StageMessage, SyncJob
from workers.admission import admit
from workers.app import app
from workers.history import record_key
from workers.pipeline import INGEST_TASK, SALES_MODULES, stages_for, start_pipeline, taken_in
from workers.stage import StageTask, run_on

TASK_NAME = INGEST_TASK


def parse_job(payload: Any) -> SyncJob:
    """The job, or an InvalidJob naming every field at fault."""
    try:
        return SyncJob.model_validate(payload)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'job'}: {err['msg']}" for err in exc.errors()
        )
        first_field = ".".join(str(p) for p in exc.errors()[0]["loc"])
        raise InvalidJob(
            f"job rejected: {problems}",
            field=first_field,
            hint="Fix the relay: the job contract is schemas/job.schema.json.",
        ) from None


@app.task(name=TASK_NAME, base=StageTask, bind=True)
def ingest(task: StageTask, payload: Any) -> str:
    """Accept one job from a relay; returns what was done with it."""
    redelivered = (task.request.delivery_info or {}).get("redelivered")
    # out of the door's journal, and counted once per job for the door's priority
    taken_in(payload, first=not task.request.retries and not redelivered)
    job = parse_job(payload)
    ctx = task.context_for(job.connection)
    key = record_key(job.connection, job.module, job.record_id)
    if not ctx.idempotency.claim_event(job, task.request.id):
        ctx.history.log(key, TASK_NAME, HistoryEvent.DUPLICATE, event_id=job.event_id)
        return "duplicate"
    if not stages_for(job.module) or (job.event == "delete" and job.module not in SALES_MODULES):
        reason = f"{job.module} '{job.event}' events are not synced by this version"
        ctx.history.log(key, TASK_NAME, HistoryEvent.SKIPPED, detail=reason)
        ctx.history.finish(job.connection, key, "skipped", reason)
        return "skipped"
    with ctx.history.gathered():  # one transaction, one round trip; written before admission
        ctx.history.start(job.connection, key, job.model_dump(mode="json"))
        ctx.history.log(
            key, TASK_NAME, HistoryEvent.ACCEPTED, zoho_event=job.event, event_id=job.event_id
        )
    return admit(ctx.redis, ctx.settings, StageMessage(job=job), start=_start_here)


def _start_here(message: StageMessage) -> None:
    """The job's first stages run in the door's task while this worker serves them (a worker
    that only keeps the door sends them on, workers/stage.py): a broker hop fewer per job."""
    start_pipeline(message, run_here=run_on)
