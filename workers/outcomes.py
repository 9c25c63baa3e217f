"""What a record's end sets going, named here rather than hooked in by whoever imports what:
its tenant's admission slot is freed (and the next waiting job started: workers/admission.py)
and the console's hourly counters move (workers/activity.py).

Every history that records outcomes in a worker is built by `record_history`; a bare
`RecordHistory` (a report, the console) records the outcome alone.
"""

from __future__ import annotations

import redis

from workers.activity import count_outcome
from workers.history import RecordHistory
from workers.store import Database


def finished(redis_client: redis.Redis, connection: str, key: str) -> None:
    """A record's outcome is stored: count it, then free its slot. Neither raises."""
    # imported here: admission imports the pipeline and so the Celery app, which reads the
    # settings; a command that only builds a context reports a settings mistake in one line
    from workers.admission import release_slot

    count_outcome(redis_client, connection, key)
    release_slot(redis_client, connection, key)


def record_history(redis_client: redis.Redis, database: Database | None = None) -> RecordHistory:
    return RecordHistory(redis_client, database, on_finish=finished)
