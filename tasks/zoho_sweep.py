"""Zoho -> Xero sweep: changes whose webhook or notification never arrived still sync.

Zoho's notifications and workflow webhooks are not retried reliably (FACTS §11), so a beat task
per connection reads, for each module the connection syncs from, the records modified since a
high-water mark (`GET /{module}` with `If-Modified-Since`: one API credit per page of 200, a
304 and no records when nothing changed) and enqueues an `update` job for each record whose
change the pipeline never saw: no history entry at or after its `Modified_Time` (our own
write-backs log history after they write, so they do not count as unseen changes). The mark is
kept per connection and module, one second behind the newest `Modified_Time` seen (Zoho's
precision is the second); the first run only sets it (the sweep catches what happens from then
on). Jobs go through the door like a relay's (`workers.pipeline.submit`) with the event id
`sweep-<record>-<modified>`, so one change is enqueued once even if swept twice.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from schemas.jobs import SyncJob
from workers import keys
from workers.app import app
from workers.context import StageContext, build_context
from workers.history import RecordHistory, record_key
from workers.logs import log
from workers.policies import HOUSEKEEPING
from workers.policies.time_limit import POLL_SOFT_SECONDS
from workers.settings import get_settings

SWEEP_TASK = "zxsync.zoho_sweep"


@app.task(name=SWEEP_TASK, soft_time_limit=POLL_SOFT_SECONDS, **HOUSEKEEPING)
def zoho_sweep(connection: str | None = None) -> int:
    """Beat entry: without a connection, one sweep per connection; jobs enqueued."""
    if connection is None:
        for name in get_settings().connections():
            app.send_task(SWEEP_TASK, args=[name])
        return 0
    return sweep(build_context(connection))


def sweep(ctx: StageContext, now: float | None = None) -> int:
    """One sweep of one connection: the jobs it enqueued."""
    from workers.pipeline import submit

    conn = ctx.connection.name
    history = RecordHistory(ctx.redis)
    started = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    enqueued = 0
    for module in ctx.connection.triggers:
        mark_key = keys.ZOHO_SWEEP(conn, module)
        mark = ctx.redis.get(mark_key)
        if mark is None:
            ctx.redis.set(mark_key, (started - timedelta(seconds=1)).isoformat())
            continue
        rows = ctx.zoho.modified_since(module, datetime.fromisoformat(str(mark)), ["Modified_Time"])
        newest: datetime | None = None
        for row in rows:
            modified = datetime.fromisoformat(str(row["Modified_Time"]))
            newest = max(newest, modified) if newest else modified
            if seen_since(history, record_key(conn, module, str(row["id"])), modified):
                continue
            submit(
                SyncJob(
                    connection=conn,
                    module=module,
                    record_id=str(row["id"]),
                    event="update",
                    event_id=f"sweep-{row['id']}-{int(modified.timestamp())}",
                    occurred_at=modified,
                )
            )
            enqueued += 1
        if newest is not None:
            ctx.redis.set(mark_key, (newest - timedelta(seconds=1)).isoformat())
        log.info("zoho_sweep", connection=conn, module=module, modified=len(rows))
    log.info("zoho_sweep.done", connection=conn, enqueued=enqueued)
    return enqueued


def seen_since(history: RecordHistory, key: str, modified: datetime) -> bool:
    """Whether the pipeline (or a write-back of ours) touched the record at or after the
    change: its last history entry is no older than the record's Modified_Time."""
    entries = history.entries(key)
    if not entries:
        return False
    return datetime.fromisoformat(str(entries[-1]["at"])) >= modified.replace(microsecond=0)
