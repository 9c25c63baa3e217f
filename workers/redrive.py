"""Re-drive jobs that stopped moving: the last net under "no document lost".

Celery on Redis can still drop a message in a few narrow windows (a worker killed between the
transport's BRPOP and its unacked bookkeeping, a Redis restart under a publish). Every accepted
job is therefore tracked until it finishes (workers/history.py); this beat task re-sends any
that made no progress for `ZXS_STALL_SECONDS` through the door as a replay, and sends again
any job lost on its way into the door (workers/door.py), under its own event id. Stages are
idempotent, so a re-driven job that was merely slow does no harm. The same beat entry pumps the
tenants' waiting rooms (workers/admission.py), the net under a release a killed worker lost.
"""

from __future__ import annotations

import time

import structlog

from schemas.history import HistoryEvent
from schemas.jobs import SyncJob
from workers import door
from workers.activity import record_heartbeat
from workers.admission import pump
from workers.app import STAGE_QUEUES, app
from workers.backlog import priority_lists
from workers.history import RecordHistory
from workers.pipeline import INGEST_TASK, send_job, submit
from workers.policies import HOUSEKEEPING
from workers.redis import get_redis
from workers.settings import get_settings

log = structlog.get_logger("zxsync.redrive")


@app.task(name="zxsync.redrive_stalled", **HOUSEKEEPING)
def redrive_stalled() -> int:
    """Send every stalled in-flight job again (as event `replay`) and every job lost at the
    door (as itself); returns how many."""
    settings = get_settings()
    record_heartbeat(get_redis())  # beat's heartbeat for /metrics: this entry runs every minute
    history = RecordHistory(get_redis())
    door_lists = priority_lists(STAGE_QUEUES[INGEST_TASK])
    sent = 0
    for connection in settings.connections():
        for key, job in history.stalled(connection, settings.zxs_stall_seconds):
            replay = SyncJob.model_validate(
                {**job, "event": "replay", "event_id": f"redrive-{key}-{int(time.time())}"}
            )
            history.log(
                key,
                "zxsync.redrive_stalled",
                HistoryEvent.REDRIVEN,
                detail=f"no progress for {settings.zxs_stall_seconds:.0f} s",
            )
            submit(replay)
            sent += 1
        for job in door.lost(get_redis(), connection, door_lists, settings.zxs_stall_seconds):
            log.warning("redrive.lost_at_door", connection=connection, event_id=job.get("event_id"))
            send_job(INGEST_TASK, [job])
            sent += 1
    if sent:
        log.warning("redrive.sent", count=sent)
    pump()
    return sent
