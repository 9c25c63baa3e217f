"""Admission at the door: a window of jobs per tenant, the rest wait in Redis, FIFO per tenant.

Why: stage queues are FIFO and shared, so a tenant that bursts 1,000 invoices would put one
event of every other tenant behind its 1,000 jobs in every queue, and a tenant at its rate limit
or out of its Xero daily budget would fill the queues (and workers' memory, as countdown tasks)
with work that cannot move. Instead, at most `ZXS_TENANT_WINDOW` jobs per connection are in the
pipeline at once; the door (tasks/ingest.py) appends the rest to the connection's waiting room,
the Redis list `zxs:admit:<connection>`, where they cost no worker memory. A tenant at its
limit holds its own window only; other tenants' jobs never queue behind more than a window of
it per stage queue.

Admitted jobs hold a slot in the sorted set `zxs:admitted:<connection>` (record key -> when
admitted, or last seen alive). When a record finishes (`RecordHistory.finish`, the one place
every outcome is recorded: done, skipped, dead-lettered) its slot is freed and the oldest waiting
jobs of that connection are started, up to the window. Each admission (and each refill after a
release) is one Lua script, so two workers can neither over-admit nor both start the same
waiting job.

No leaks, nothing lost:

- a slot is keyed by record key, so a re-driven or replayed job of an admitted record shares its
  slot and starts at once (it never waits behind its own slot);
- a slot older than `ZXS_STALL_SECONDS` whose record shows no progress for as long (a lost
  message, a worker killed between finish and release) is reclaimed by the connection's next
  admission or refill; a record that is moving, or parked until Xero's next day, keeps its slot;
- a waiting job is not in flight (`zxs:inflight`, `zxs:progress`): the stall re-drive leaves it
  alone, and it is not lost, being in Redis (appendonly in production). Admitted, it is in flight
  from that moment, so a job popped by a worker that died before starting it is re-driven after
  `ZXS_STALL_SECONDS` (workers/redrive.py);
- `pump` (called by beat's `zxsync.redrive_stalled`) admits waiting jobs of every connection,
  so a waiting room never stays stuck if a release was lost.

Pause: an operator may pause a connection (the ops console, `zxsync console`). While the key
`zxs:paused:<connection>` exists the script admits nothing for it: new jobs join the waiting
room, in Redis, and jobs already admitted finish. `resume` deletes the key and starts the
waiting jobs up to the window, oldest first; nothing is lost or reordered.

So a job is started at least once; stages are idempotent (README "Exactly once"), which makes
the rare second start harmless. The release runs when a record finishes (workers/outcomes.py
names it, with the history the workers build), so that history stays free of Celery and the
stages that record outcomes need not know about admission.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import redis
import structlog

from schemas.history import HistoryEvent
from schemas.jobs import StageMessage
from schemas.wire import dumps, loads
from workers import keys
from workers.history import RecordHistory, inflight_key, progress_key, record_key
from workers.pipeline import start_pipeline
from workers.redis import get_redis, registered
from workers.settings import Settings, get_settings

STAGE = "zxsync.admission"
RECLAIM_BATCH = 1000
log = structlog.get_logger("zxsync.admission")

# KEYS: admitted (zset), waiting (list), progress (zset), inflight (hash), paused (string)
# ARGV: now, window, stall seconds, mode (admit | fill), record key, entry
# Returns {own, entries...}: own = 1 when the caller's own job (admit mode) is admitted; entries:
# the other waiting jobs this call admitted, which the caller must start.
_ADMIT = f"""
local admitted, waiting, progress, inflight = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now, window, stall = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local mode, key, own_entry = ARGV[4], ARGV[5], ARGV[6]
if redis.call('EXISTS', KEYS[5]) == 1 then window = 0 end  -- paused: everything waits
local cutoff = now - stall
local old = redis.call('ZRANGEBYSCORE', admitted, '-inf', cutoff, 'LIMIT', 0, {RECLAIM_BATCH})
for _, k in ipairs(old) do
  local seen = redis.call('ZSCORE', progress, k)
  local at = seen and tonumber(seen)
  if seen and (at == nil or at > cutoff) then
    redis.call('ZADD', admitted, now, k)  -- alive: moving, or parked until later
  else
    redis.call('ZREM', admitted, k)  -- finished without a release, or lost: reclaim the slot
  end
end
if mode == 'admit' then
  if redis.call('ZSCORE', admitted, key) then
    redis.call('ZADD', admitted, now, key)  -- a re-drive or replay shares its record's slot
    return {{1}}
  end
  redis.call('RPUSH', waiting, own_entry)
  -- waiting, not in flight: neither stalled (the re-drive leaves it alone) nor counted as in
  -- the pipeline (batching flushes when every job in flight waits for it)
  redis.call('HDEL', inflight, key)
  redis.call('ZREM', progress, key)
end
local result = {{0}}
while redis.call('ZCARD', admitted) < window do
  local raw = redis.call('LPOP', waiting)
  if not raw then break end
  local entry = cjson.decode(raw)
  -- admitted is in flight again, from now: if it is never started, the re-drive finds it
  redis.call('ZADD', admitted, now, entry.key)
  redis.call('ZADD', progress, now, entry.key)
  redis.call('HSET', inflight, entry.key, cjson.encode(entry.message.job))
  if raw == own_entry then
    result[1] = 1
  else
    result[#result + 1] = raw
  end
end
return result
"""


def waiting_key(connection: str) -> str:
    return keys.ADMIT(connection)


def admitted_key(connection: str) -> str:
    return keys.ADMITTED(connection)


def paused_key(connection: str) -> str:
    return keys.PAUSED(connection)


@dataclass(frozen=True)
class Entry:
    """A job in (or just out of) the waiting room."""

    key: str
    message: dict[str, Any]
    queued_at: float

    @classmethod
    def parse(cls, raw: str) -> Entry:
        data = loads(raw)
        return cls(data["key"], data["message"], float(data["queued_at"]))


class TenantWindows:
    """The admission state in Redis; no Celery here (the functions below start pipelines)."""

    def __init__(self, redis_client: redis.Redis, window: int, stall_seconds: float) -> None:
        self._redis = redis_client
        self.window = window
        self.stall_seconds = stall_seconds
        self._script = registered(redis_client, _ADMIT)

    def admit(self, connection: str, key: str, message: dict[str, Any]) -> tuple[bool, list[Entry]]:
        """Take a slot for `key` (or share the one it holds) or append it to the waiting room.
        Returns whether this job is admitted now, and other waiting jobs admitted with it."""
        entry = dumps({"key": key, "message": message, "queued_at": time.time()})
        return self._run(connection, "admit", key, entry)

    def release(self, connection: str, key: str) -> list[Entry]:
        """Free `key`'s slot; returns the waiting jobs admitted in its place (to be started).
        The slot goes first, then the room is read: a job queued meanwhile (window full) is
        seen here, and one admitted meanwhile took the free slot itself. The script runs only
        when jobs wait (the common finish costs one round trip)."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.zrem(admitted_key(connection), key)
        pipe.llen(waiting_key(connection))
        _, waiting = pipe.execute()
        return self.fill(connection) if int(waiting) else []

    def fill(self, connection: str) -> list[Entry]:
        """Reclaim stale slots and admit waiting jobs up to the window; returns them."""
        return self._run(connection, "fill")[1]

    def counts(self, connection: str) -> tuple[int, int]:
        """(admitted, waiting) for the connection."""
        pipe = self._redis.pipeline()
        pipe.zcard(admitted_key(connection))
        pipe.llen(waiting_key(connection))
        admitted, waiting = pipe.execute()
        return int(admitted), int(waiting)

    def waiting(self, connection: str) -> list[Entry]:
        """The waiting room, oldest first."""
        rows = cast(list[str], self._redis.lrange(waiting_key(connection), 0, -1))
        return [Entry.parse(raw) for raw in rows]

    def _run(
        self, connection: str, mode: str, key: str = "", entry: str = ""
    ) -> tuple[bool, list[Entry]]:
        keys = [
            admitted_key(connection),
            waiting_key(connection),
            progress_key(connection),
            inflight_key(connection),
            paused_key(connection),
        ]
        args: list[str | float] = [time.time(), self.window, self.stall_seconds, mode, key, entry]
        result = cast(list[Any], self._script(keys=keys, args=args))
        return bool(int(result[0])), [Entry.parse(str(raw)) for raw in result[1:]]


def windows(
    redis_client: redis.Redis | None = None, settings: Settings | None = None
) -> TenantWindows:
    settings = settings or get_settings()
    return TenantWindows(
        redis_client or get_redis(), settings.zxs_tenant_window, settings.zxs_stall_seconds
    )


def admit(
    redis_client: redis.Redis,
    settings: Settings,
    message: StageMessage,
    start: Callable[[StageMessage], None] | None = None,
) -> str:
    """At the door, after the job is claimed and in flight: start its pipeline (`start`, by
    default `start_pipeline`) if the tenant's window has room, else leave it in the waiting
    room. Returns "started" or "queued"."""
    job = message.job
    key = record_key(job.connection, job.module, job.record_id)
    tenant = windows(redis_client, settings)
    own, others = tenant.admit(job.connection, key, message.model_dump(mode="json"))
    history = RecordHistory(redis_client)
    if own:
        (start or start_pipeline)(message)
    else:
        admitted, waiting = tenant.counts(job.connection)
        history.log(
            key,
            STAGE,
            HistoryEvent.QUEUED,
            admitted=admitted,
            waiting=waiting,
            window=tenant.window,
        )
    _start(redis_client, others)
    return "started" if own else "queued"


def pause(redis_client: redis.Redis, connection: str, by: str) -> None:
    """Hold the connection's new jobs in its waiting room until `resume`."""
    redis_client.set(paused_key(connection), dumps({"by": by, "at": time.time()}))
    log.warning("admission.paused", connection=connection, by=by)


def paused(redis_client: redis.Redis, connection: str) -> dict[str, Any] | None:
    """Who paused the connection and when (epoch seconds), or None when it runs."""
    raw = redis_client.get(paused_key(connection))
    return cast(dict[str, Any], loads(str(raw))) if raw else None


def resume(
    redis_client: redis.Redis, connection: str, by: str, settings: Settings | None = None
) -> int:
    """Let the connection's jobs in again: its waiting jobs start, up to the window, oldest
    first (the rest follow as slots free up). Returns how many started now."""
    redis_client.delete(paused_key(connection))
    entries = windows(redis_client, settings).fill(connection)
    _start(redis_client, entries)
    log.warning("admission.resumed", connection=connection, by=by, started=len(entries))
    return len(entries)


def pump(redis_client: redis.Redis | None = None, settings: Settings | None = None) -> int:
    """Admit waiting jobs of every connection up to its window (the net under a lost release);
    returns how many were started."""
    settings = settings or get_settings()
    redis_client = redis_client or get_redis()
    tenant = windows(redis_client, settings)
    started = 0
    for connection in settings.connections():
        entries = tenant.fill(connection)
        _start(redis_client, entries)
        started += len(entries)
    if started:
        log.warning("admission.pumped", count=started)
    return started


def _start(redis_client: redis.Redis, entries: list[Entry]) -> None:
    history = RecordHistory(redis_client)
    for entry in entries:
        waited = round(time.time() - entry.queued_at, 1)
        history.log(entry.key, STAGE, HistoryEvent.ADMITTED, waited_seconds=waited)
        start_pipeline(StageMessage.model_validate(entry.message))


def release_slot(redis_client: redis.Redis, connection: str, key: str) -> None:
    """A record finished: free its slot and start the tenant's next waiting jobs. Never raises
    (the outcome is recorded; a failure here only delays the waiting room until `pump`)."""
    try:
        _start(redis_client, windows(redis_client).release(connection, key))
    except Exception:
        log.exception("admission.release_failed", connection=connection, record=key)
