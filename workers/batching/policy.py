"""When a buffer flushes (its timing policy) and the trigger that sends the flush.

A flush is due once the buffer is full, every job the connection has in flight or at the door
waits in it or in its other buffers (nothing more can come, so a lone event goes at once), or
its oldest element waited `max_wait` (ZXS_BATCH_BURST_WAIT while the connection has a backlog
of more than a batch: then requests are what is scarce); never while the buffer is held (a rate
limit's Retry-After, a retry's backoff). Stages reach the buffer only through `enqueue` and
`buffered`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from clients.zoho import MAX_RECORDS_PER_CALL
from workers import keys
from workers.app import app
from workers.batching.buffer import Buffer
from workers.batching.kinds import KINDS
from workers.history import inflight_key
from workers.pipeline import door_key, tenant_priority
from workers.redis import get_redis
from workers.settings import Settings, get_settings


def batch_size(kind: str, settings: Settings) -> int:
    if not settings.zxs_batching:
        return 1
    return settings.zxs_batch_size if KINDS[kind].xero else MAX_RECORDS_PER_CALL


def wait_before_flush(
    buffer: Buffer,
    size: int,
    max_wait: float,
    inflight: int,
    parked_elsewhere: int = 0,
    paced: float = 0.0,
) -> float:
    """0 when a flush is due; else the seconds until it will be; -1 when nothing waits.

    Due when full, when the oldest element waited `max_wait`, or when every job the
    connection has in flight (`inflight`) waits here or in its other buffers: nothing is
    moving that could join the batch, so a lone event (a trickle) goes at once, and so does
    the tail of a burst, while the burst itself fills its batches. A part-full batch waits
    `paced` seconds more while its tenant has spent its pace (`pace_wait`).
    """
    now = time.time()
    count, oldest, waiting, hold = buffer.state(now)
    if not count:
        return oldest - now if oldest is not None else -1
    if hold and hold > now:
        return hold - now
    if count >= size:
        return 0
    if waiting + parked_elsewhere >= inflight:
        return paced
    since_oldest = now - oldest if oldest is not None else max_wait
    return max(paced, max_wait - since_oldest)


# Part-full Xero flushes a tenant may send at once before pacing sets in: a lone event's
# contact, items and invoice go without waiting; a steady trickle is paced.
PACE_BURST = 3.0


def pace_per_minute(settings: Settings) -> float | None:
    """A tenant's fair share of the app's Xero calls a minute (the app's minute split between
    its connections), or None when that is no less than the tenant's own limit: then the app
    limit cannot bind before the tenant's, which its limiter keeps (workers/ratelimit.py)."""
    share = settings.zxs_xero_app_per_minute / max(1, len(settings.connections()))
    return share if share < settings.zxs_xero_per_minute else None


def pace_wait(state: list[Any], now: float, per_minute: float | None) -> float:
    """Seconds before the tenant's pace allows another part-full Xero flush (0: now).

    A trickle flushes a part-full batch per event: 18 tenants at one event a second need 1,080
    calls a minute, past an app limit of 1,000 (the tenants bench), so every tenant's events
    waited on the app's next minute, up to a minute (p99 8.7 s). A tenant's part-full flushes
    now draw on a bucket of `PACE_BURST` refilled at its fair share: a trickle past that share
    waits to share its calls, a lone event does not wait, and full batches are never paced.
    Hand-written: the limiter (workers/ratelimit.py) says when a call may go, not how long a
    batch should wait to fill."""
    tokens, at = state
    if tokens is None or at is None or per_minute is None:
        return 0.0
    level = min(PACE_BURST, float(tokens) + (now - float(at)) * per_minute / 60)
    return 0.0 if level >= 1 else (1 - level) * 60 / per_minute


# a part-full batch takes a token only if one is there: two kinds of one tenant that both saw
# its last token (flushes checked at the same moment) must not both spend it (issue #19)
_TAKE_PACE = """
local now, rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or burst)
local at = tonumber(redis.call('HGET', KEYS[1], 'at') or now)
local level = math.min(burst, tokens + (now - at) * rate / 60)
if level < 1 then
  return tostring((1 - level) * 60 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(level - 1), 'at', ARGV[1])
redis.call('EXPIRE', KEYS[1], 120)
return '0'
"""


def take_pace(buffer: Buffer, settings: Settings) -> float:
    """A part-full Xero batch is about to go: take a token of the tenant's pace (0.0), or the
    seconds until one is there, taking nothing."""
    rate = pace_per_minute(settings)
    if rate is None or not KINDS[buffer.kind].xero:
        return 0.0
    now, key = time.time(), keys.BATCH_PACE(buffer.connection)
    return float(buffer.redis.eval(_TAKE_PACE, 1, key, now, rate, PACE_BURST))


# the buffers whose flush trigger waits for the end of a `triggers_held` block in this thread
_held: ContextVar[set[tuple[str, str]] | None] = ContextVar("zxs_triggers_held", default=None)


def enqueue(kind: str, connection: str, elements: dict[str, dict[str, Any]], waiter: Any) -> None:
    """Buffer a stage's elements with its resume signature and make sure a flush will come."""
    settings = get_settings()
    buffer = Buffer(get_redis(), kind, connection)
    buffer.add(elements, dict(waiter))
    held = _held.get()
    if held is not None:
        held.add((kind, connection))
        return
    schedule_flush(buffer, due_in(buffer, settings), settings)


@contextmanager
def triggers_held() -> Iterator[None]:
    """Stages parked inside get their flush triggers when the block ends, once per buffer.

    A flusher that runs resumed stages on until they park (workers/stage.py) does so while the
    documents it resumes still count as waiting in its own buffer: "every job in flight waits"
    would hold at each park, and the next buffer would flush one element at a time. A trigger
    lost with a killed worker is beat's sweeper's (workers/batching/sweep.py)."""
    held: set[tuple[str, str]] = set()
    token = _held.set(held)
    try:
        yield
    finally:
        _held.reset(token)
        settings = get_settings()
        for kind, connection in sorted(held):
            buffer = Buffer(get_redis(), kind, connection)
            schedule_flush(buffer, due_in(buffer, settings), settings)


def buffered(kind: str, connection: str, element_id: str) -> bool:
    """Whether the element already waits in its buffer (a stage then need not read its payload
    again)."""
    return Buffer(get_redis(), kind, connection).has(element_id)


def schedule_flush(buffer: Buffer, wait: float, settings: Settings) -> None:
    """Send a flush for when it is due, unless one for that moment is already on its way.

    At most one immediate and one delayed trigger per buffer wait in the queue: kombu serves
    queues round robin, so a flood of no-op flushes would delay the one that matters. A wait
    longer than the longest retry backoff (a tenant out of its daily budget) is left to beat's
    sweeper, so no trigger waits in worker memory for hours."""
    if wait < 0 or wait > max(settings.zxs_batch_max_wait, settings.zxs_retry_backoff_max):
        return
    flag = "due" if wait == 0 else "scheduled"
    ttl_ms = int(wait * 1000) + _trigger_ms(settings)
    if buffer.redis.set(buffer.key(flag), 1, nx=True, px=ttl_ms):
        send_flush(buffer.kind, buffer.connection, wait, flag)


def due_in(buffer: Buffer, settings: Settings) -> float:
    """Seconds before this buffer's next flush is due (this module's doc), -1 if none."""
    if not settings.zxs_batching:
        return 0.0 if buffer.pending() else -1.0
    size = batch_size(buffer.kind, settings)
    xero = KINDS[buffer.kind].xero
    pipe = buffer.redis.pipeline()
    pipe.hmget(keys.BATCH_PACE(buffer.connection), ["tokens", "at"])
    pipe.hlen(inflight_key(buffer.connection))
    pipe.get(door_key(buffer.connection))
    others = [k for k in KINDS if k != buffer.kind]
    for kind in others:
        pipe.scard(Buffer(buffer.redis, kind, buffer.connection).key("waiting"))
    pace, *counts = pipe.execute()
    inflight, at_door, *parked = (int(n or 0) for n in counts)
    # jobs still at the door are on their way: "every job in flight waits here" needs them too
    inflight += at_door
    # with a backlog a Xero request saved is worth more than the seconds a straggler waits
    backlog = xero and inflight > size
    max_wait = settings.zxs_batch_burst_wait if backlog else settings.zxs_batch_max_wait
    # a bucket never spent (no pace on this app, or none yet) costs no look at the connections
    spent = xero and pace[0] is not None
    paced = pace_wait(pace, time.time(), pace_per_minute(settings)) if spent else 0.0
    return wait_before_flush(buffer, size, max_wait, inflight, sum(parked), paced)


def _trigger_ms(settings: Settings) -> int:
    return int((settings.zxs_batch_max_wait + 1.0) * 1000)


def send_flush(kind: str, connection: str, countdown: float, trigger: str) -> None:
    app.send_task(
        "zxsync.flush_batch",
        args=[kind, connection, trigger],
        countdown=countdown if countdown else None,
        priority=tenant_priority(connection),
    )
