"""Per-tenant batching: elements wait in Redis and a flush task sends many per request.

Xero allows 60 calls a minute per tenant but takes up to 50 elements per request
(`../shared/xero/FACTS.md` "Batches"), and Zoho takes 100 records per update; a burst costs the
fewest calls when stages of many documents share requests.

A stage that needs a write raises `AwaitingBatch(kind, {element id: payload})`. The stage
middleware (workers/stage.py) adds the elements to the connection's buffer for that kind, with
the task's resume signature (same task, same message, the rest of its chain), and the task ends.
`zxsync.flush_batch` (one flusher per kind and connection at a time) claims up to `size`
elements once the buffer is full, every job the connection has in flight or at the door waits
in it (nothing more can come, so a lone event goes at once), or its oldest element waited
`max_wait` (longer while the connection has a backlog of more than a batch: then requests are
what is scarce);
the kind's handler (registered by its stage module) makes the calls and stores the links; then
the flusher finishes each waiting stage with its elements' outcomes and sends the next stage of
its chain, or, when that stage cannot go on (its element's error, another wait), sends the
waiting task again, to be dead-lettered alone with its full payload or to wait again.

Why not celery-batches: it holds requests in worker memory and acks a batch as a whole after
the flush, whatever happened to each item (`../shared/notes/celery-redis.md`). Here an element
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
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, cast

import redis
import structlog
from celery.canvas import Signature
from redis.exceptions import LockError, RedisError
from redis.lock import Lock

from clients.zoho import MAX_RECORDS_PER_CALL
from schemas.errors import MarkNotReplicated, RateLimited, SyncError
from schemas.wire import dumps, loads
from workers.app import app
from workers.context import StageContext, build_context
from workers.deadletter import describe
from workers.history import inflight_key
from workers.idempotency import idempotency_key
from workers.pipeline import door_key, tenant_priority
from workers.redis import get_redis
from workers.retry import retry_countdown
from workers.settings import Settings, get_settings
from workers.store import get_database

ACTIVE = "zxs:batch:active"
RESUMED_TTL_SECONDS = 24 * 3600
FLUSH_LOCK_SECONDS = 10  # renewed every third of it while the flusher lives
log = structlog.get_logger("zxsync.batching")


class AwaitingBatch(Exception):
    """Raised by a stage: these elements must be written in a batch before the stage can go on."""

    def __init__(
        self,
        kind: str,
        elements: dict[str, dict[str, Any]],
        carry: dict[str, Any] | None = None,
    ):
        super().__init__(f"waiting for {len(elements)} {kind}")
        self.kind = kind
        self.elements = elements
        self.carry = carry  # the message to resume with, if the stage learned something

    def __reduce__(self) -> tuple[Any, ...]:
        return (AwaitingBatch, (self.kind, self.elements, self.carry))


@dataclass(frozen=True)
class Element:
    id: str
    payload: dict[str, Any]
    suspect: bool  # an earlier flush may have written it: look it up before creating
    flush: str = ""  # the flush attempt that claimed it
    sent: dict[str, Any] | None = None  # the mark of a create that may have reached Xero

    @property
    def may_exist(self) -> bool:
        """Whether Xero may hold this element already: it must be looked up before a create."""
        return self.suspect or self.sent is not None


@dataclass(frozen=True)
class SuspectPlan:
    """What to do with elements that may exist in Xero (see `plan_suspects`)."""

    resend: dict[str, list[Element]]  # Idempotency-Key -> the same request's elements, again
    lookup: list[Element]  # look up before creating
    later: dict[str, float]  # element id -> when it may be looked up


def plan_suspects(
    elements: list[Element], digests: dict[str, str], now: float, window: float, margin: float
) -> SuspectPlan:
    """Decide, per earlier request, between sending it again and looking its elements up.

    Within Xero's idempotency window (less the margin, so the key cannot lapse on the way) an
    earlier request whose elements are all here again with the same content (`digests`: element
    id -> digest of its body now) is sent again with the same key: Xero answers it with its first
    answer, or runs it if it never arrived. Otherwise its elements are looked up, but not before
    `margin` seconds after it was sent: a create that timed out may still be committing in Xero,
    and a lookup too soon would find nothing and create it twice. Elements without a mark (a
    retry, a replay, an orphan) are looked up at once."""
    resend: dict[str, list[Element]] = {}
    lookup: list[Element] = []
    later: dict[str, float] = {}
    by_key: dict[str, list[Element]] = {}
    for element in elements:
        if element.sent is None:
            lookup.append(element)
        else:
            by_key.setdefault(str(element.sent["key"]), []).append(element)
    for key, group in by_key.items():
        mark = group[0].sent or {}
        age = now - float(mark["at"])
        whole = sorted(e.id for e in group) == list(mark["ids"])
        same = all(mark.get("digests", {}).get(e.id) == digests.get(e.id) for e in group)
        if whole and same and age < window - margin:
            resend[key] = sorted(group, key=lambda e: e.id)
        elif age < margin:
            later.update(dict.fromkeys((e.id for e in group), float(mark["at"]) + margin))
        else:
            lookup += group
    return SuspectPlan(resend, lookup, later)


def plan_unlinked(
    elements: list[Element],
    linked: Iterable[str],
    digest: Callable[[Element], str],
    window: float,
    margin: float,
) -> tuple[list[Element], dict[str, str], SuspectPlan]:
    """The elements with no link yet (in id order), their body digests, and the plan for those
    that may exist in Xero already: the first steps every create handler takes."""
    skip = set(linked)
    todo = sorted((e for e in elements if e.id not in skip), key=lambda e: e.id)
    digests = {e.id: digest(e) for e in todo}
    suspects = [e for e in todo if e.may_exist or e.payload["suspect"]]
    return todo, digests, plan_suspects(suspects, digests, time.time(), window, margin)


class Later(SyncError):
    """This element may not be looked up yet (its create may still be committing in Xero): it
    goes back to the buffer, which holds until `until`, without spending an attempt."""

    kind = "transient"
    retryable = True

    def __init__(self, until: float):
        super().__init__("waiting before the lookup of a create that got no answer")
        self.until = until


class LeaseLost(Exception):
    """This flusher's lease on the buffer expired and another flusher took it: it must neither
    write links nor send a create again (the new flusher takes its elements back as suspects)."""


# Check the flusher's fencing token, then write marks and clear marks in one step (links go to
# the database): KEYS fence, sent marks, unused; ARGV token, n marks, (id, mark)..., 0, ids
# whose marks go.
_FENCED = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local i = 2
local n = tonumber(ARGV[i])
for j = 1, n do
  redis.call('HSET', KEYS[2], ARGV[i + 2 * j - 1], ARGV[i + 2 * j])
end
i = i + 2 * n + 1
n = tonumber(ARGV[i])
for j = 1, n do
  redis.call('HSET', KEYS[3], ARGV[i + 2 * j - 1], ARGV[i + 2 * j])
end
for j = i + 2 * n + 1, #ARGV do
  redis.call('HDEL', KEYS[2], ARGV[j])
end
return 1
"""


MARK_REPLICATION_MS = 2000  # how long a create waits for a replica to hold its mark


def mark_replicas(redis_client: redis.Redis, wanted: int) -> int:
    """How many replicas must acknowledge a mark before its create goes out: `wanted`
    (ZXS_REDIS_MARK_REPLICAS), capped by the replicas the master has now (none: no wait)."""
    if wanted <= 0:
        return 0
    replication = redis_client.info("replication")
    return min(wanted, int(replication.get("connected_slaves", 0)))


@dataclass(frozen=True)
class Flush:
    """One flusher's hold on a buffer: every write a handler makes goes through here, checked
    against the buffer's fencing token (a flusher whose lease expired while it waited on Xero
    finds a newer token and stops), and the "a create may have reached Xero" marks live here:
    set before a create is sent, cleared only once Xero's answer for the element is stored or a
    lookup has told what Xero holds. A mark survives every path (retry, redelivery, a later event,
    a replay, a dead letter), so the element stays a suspect until then."""

    buffer: Buffer
    token: int
    replicas: int = 0  # replicas that must hold a mark before its create is sent

    def sending(
        self,
        elements: list[Element],
        key: str,
        digests: dict[str, str] | None = None,
        *,
        claim: str = "",
        looked_up: frozenset[str] = frozenset(),
        margin: float = 0.0,
    ) -> set[str]:
        """Mark these elements before their create is sent (raises LeaseLost if fenced out):
        the key, when, the request's element ids and each body's digest (`plan_suspects`).
        With replicas, returns only once `replicas` of them hold the marks (WAIT), else raises
        MarkNotReplicated: an unreplicated mark dies with a failed master, and the promoted
        replica would create the element again.

        With `claim` (a link kind) the database first claims each element's link row under
        the key (workers/store `claim_creates`): the ids it refuses (linked, or claimed by a
        create that may still be committing; a claim older than `margin` is taken over by an
        element `looked_up` and not found) are returned, unmarked, and must not be sent."""
        self.check()
        refused: set[str] = set()
        if claim:
            refused = get_database().claim_creates(
                claim,
                self.buffer.connection,
                sorted(e.id for e in elements),
                key,
                take_over=set(looked_up),
                older_than=time.time() - margin,
            )
        going = [e for e in elements if e.id not in refused]
        ids = sorted(e.id for e in going)
        mark = dumps({"key": key, "at": time.time(), "ids": ids, "digests": digests or {}})
        self._write({e.id: mark for e in going}, [], replicas=self.replicas)
        return refused

    def store(
        self, link_kind: str, links: dict[str, dict[str, Any]], settled: list[str]
    ) -> None:
        """Store the links Xero's answers gave and clear the marks of the elements now settled
        (created, adopted, found absent, or refused: Xero's answer is known). The links go to
        the database once the fence holds: a true answer of Xero is never wrong to keep; a
        settled element without a link (Xero refused it) gives its pending claim back."""
        self.check()
        if link_kind:
            database = get_database()
            database.set_links(link_kind, self.buffer.connection, links)
            database.release_claims(
                link_kind, self.buffer.connection, [s for s in settled if s not in links]
            )
        self._write({}, settled)

    def check(self) -> None:
        """Raise LeaseLost unless this flusher still holds the buffer."""
        self._write({}, [])

    def _write(
        self, marks: dict[str, str], settled: list[str], *, replicas: int = 0
    ) -> None:
        buffer = self.buffer
        args: list[Any] = [self.token, len(marks)]
        for element_id, mark in marks.items():
            args += [element_id, mark]
        args.append(0)
        args += settled
        keys = [buffer.key("fence"), buffer.key("sent"), buffer.key("-")]
        # one connection for both: WAIT counts the writes of the connection that sends it
        pipe = buffer.redis.pipeline(transaction=False)
        pipe.eval(_FENCED, len(keys), *keys, *args)
        if replicas:
            pipe.wait(replicas, MARK_REPLICATION_MS)
        written, *acknowledged = pipe.execute()
        if not written:
            raise LeaseLost(f"{buffer.member}: another flusher holds the buffer")
        if acknowledged and int(acknowledged[0]) < replicas:
            raise MarkNotReplicated(
                f"{buffer.member}: {acknowledged[0]} of {replicas} Redis replicas acknowledged"
                f" the marks within {MARK_REPLICATION_MS} ms; the create was not sent",
                hint="Check the Redis replicas' replication link (INFO replication); it is"
                " retried on its own once a replica keeps up.",
            )


def flush_key(kind: str, connection: str, elements: list[Element], content: str) -> str:
    """The Idempotency-Key of a new batched write. Xero caches errors under a key for 6 minutes,
    so a content-only key would answer a replay made after a fix with the old refusal: a new
    request gets a new key, and an unanswered one is sent again under the key its elements'
    marks keep (`plan_suspects`)."""
    return idempotency_key(kind, connection, elements[0].flush if elements else "", content)


# per element: an outcome (JSON) for the waiting stages, or the error that refused it
Results = dict[str, "dict[str, Any] | SyncError"]
Handler = Callable[[StageContext, list[Element]], Results]


@dataclass(frozen=True)
class Kind:
    handler: Handler
    xero: bool  # sized by ZXS_BATCH_SIZE; otherwise a Zoho kind of up to 100 records
    latest_wins: bool  # a newer payload replaces a waiting one (write-backs), else first wins


KINDS: dict[str, Kind] = {}

# task name -> finishes that stage in the flusher with a resume's batch and attempt, returning its
# result, or None when the task must run instead (registered by workers/stage.py)
Continuation = Callable[[dict[str, Any], dict[str, Any], int], "dict[str, Any] | None"]
CONTINUATIONS: dict[str, Continuation] = {}


def batch_handler(
    kind: str, *, xero: bool = True, latest_wins: bool = False
) -> Callable[[Handler], Handler]:
    """Register the function that writes one batch of `kind` (stage modules do this)."""

    def register(fn: Handler) -> Handler:
        KINDS[kind] = Kind(fn, xero, latest_wins)
        return fn

    return register


def batch_size(kind: str, settings: Settings) -> int:
    if not settings.zxs_batching:
        return 1
    return settings.zxs_batch_size if KINDS[kind].xero else MAX_RECORDS_PER_CALL



# Add one element and its waiter atomically; a claimed element keeps its claim (its waiters are
# resumed when the flush in flight finishes).
_ADD = """
local items, queue, claimed, waiters, waiting = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id, payload, waiter, now, replace = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if replace == '1' then
  redis.call('HSET', items, id, payload)
else
  redis.call('HSETNX', items, id, payload)
end
if not redis.call('ZSCORE', claimed, id) then
  redis.call('ZADD', queue, 'NX', now, id)
end
redis.call('RPUSH', waiters, waiter)
redis.call('SADD', waiting, ARGV[7])  -- the task ids of the documents waiting here
redis.call('SADD', KEYS[6], ARGV[6])
return redis.call('ZCARD', queue)
"""

# Forget a finished element, unless a waiter arrived after its waiters were taken.
_COMPLETE = """
if redis.call('LLEN', KEYS[1]) > 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('SREM', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
return 1
"""


class Buffer:
    """One connection's buffer of one kind, in Redis."""

    def __init__(self, redis_client: redis.Redis, kind: str, connection: str):
        self.redis, self.kind, self.connection = redis_client, kind, connection
        self.prefix = f"zxs:batch:{kind}:{connection}"
        self.member = f"{kind}|{connection}"

    def key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    def waiters_key(self, element_id: str) -> str:
        return f"{self.prefix}:waiters:{element_id}"

    def add(self, elements: dict[str, dict[str, Any]], waiter: dict[str, Any]) -> int:
        """Buffer the elements with their waiting task; returns how many elements wait."""
        replace = "1" if KINDS[self.kind].latest_wins else "0"
        pipe = self.redis.pipeline(transaction=False)  # one round trip for a document's elements
        for element_id, payload in elements.items():
            keys = [
                self.key("items"),
                self.key("queue"),
                self.key("claimed"),
                self.waiters_key(element_id),
                self.key("waiting"),
                ACTIVE,
            ]
            args: list[str | float] = [
                element_id,
                dumps(payload),
                dumps(waiter),
                time.time(),
                replace,
                self.member,
                waiter["options"]["task_id"],
            ]
            pipe.eval(_ADD, len(keys), *keys, *args)
        counts = pipe.execute()
        return int(counts[-1]) if counts else 0

    def reclaim_orphans(self) -> int:
        """Under the flush lock every claimed element is a dead flusher's: back to the queue,
        as suspects."""
        orphans = cast(list[str], self.redis.zrange(self.key("claimed"), 0, -1))
        if orphans:
            pipe = self.redis.pipeline()
            pipe.zrem(self.key("claimed"), *orphans)
            pipe.zadd(self.key("queue"), dict.fromkeys(orphans, 0))
            pipe.sadd(self.key("suspect"), *orphans)
            pipe.execute()
        return len(orphans)

    def suspect_after_restart(self) -> int:
        """After Redis restarted or failed over, every buffered element is a suspect: with
        `appendonly everysec` a crash loses the last second, and a replica promoted by Sentinel
        may lack the master's last writes, so a claim, a mark or a link written then may be
        gone while Xero got the create. The server's run_id changes with every start; a buffer
        remembers the one it last flushed under. Returns the elements marked."""
        run_id = str(self.redis.info("server")["run_id"])
        seen = self.redis.set(self.key("server"), run_id, get=True)
        if seen is None or seen == run_id:
            return 0
        ids = cast(list[str], self.redis.hkeys(self.key("items")))
        if ids:
            self.redis.sadd(self.key("suspect"), *ids)
        log.warning("batch.redis_restarted", buffer=self.member, suspects=len(ids))
        return len(ids)

    def wait_before_flush(
        self, size: int, max_wait: float, inflight: int, parked_elsewhere: int = 0
    ) -> float:
        """0 when a flush is due; else the seconds until it will be; -1 when nothing waits.

        Due when full, when the oldest element waited `max_wait`, or when every job the
        connection has in flight (`inflight`) waits here or in its other buffers: nothing is
        moving that could join the batch, so a lone event (a trickle) goes at once, and so does
        the tail of a burst, while the burst itself fills its batches.
        """
        now = time.time()
        pipe = self.redis.pipeline()
        pipe.zcount(self.key("queue"), "-inf", now)  # an element released until later is not due
        pipe.zrange(self.key("queue"), 0, 0, withscores=True)
        pipe.scard(self.key("waiting"))
        pipe.get(self.key("hold"))
        count, oldest, waiting, hold = pipe.execute()
        if not count:
            return float(oldest[0][1]) - now if oldest else -1
        if hold and float(hold) > now:
            return float(hold) - now
        if count >= size or waiting + parked_elsewhere >= inflight:
            return 0
        since_oldest = now - float(oldest[0][1]) if oldest else max_wait
        return max(0.0, max_wait - since_oldest)

    def claim(self, size: int) -> list[Element]:
        due = self.redis.zrangebyscore(self.key("queue"), "-inf", time.time(), start=0, num=size)
        ids = cast(list[str], due)
        if not ids:
            return []
        pipe = self.redis.pipeline()
        pipe.zrem(self.key("queue"), *ids)
        pipe.zadd(self.key("claimed"), dict.fromkeys(ids, time.time()))
        pipe.hmget(self.key("items"), ids)
        pipe.smismember(self.key("suspect"), ids)
        pipe.hmget(self.key("sent"), ids)
        _, _, payloads, suspects, marks = pipe.execute()
        flush = uuid.uuid4().hex
        return [
            Element(element_id, loads(raw), bool(suspect), flush, loads(mark) if mark else None)
            for element_id, raw, suspect, mark in zip(ids, payloads, suspects, marks, strict=True)
            if raw is not None
        ]

    def fence(self) -> int:
        """A new fencing token: writes of any earlier flusher of this buffer fail from now on."""
        return int(self.redis.incr(self.key("fence")))

    def release(self, ids: list[str], *, suspect: bool) -> None:
        """Claimed elements back to the front of the queue (after a failed request)."""
        if not ids:
            return
        pipe = self.redis.pipeline()
        pipe.zrem(self.key("claimed"), *ids)
        pipe.zadd(self.key("queue"), dict.fromkeys(ids, 0))
        if suspect:
            pipe.sadd(self.key("suspect"), *ids)
        pipe.execute()

    def release_until(self, until: dict[str, float]) -> None:
        """Claimed elements back to the queue as suspects, each claimable only from its time
        (the rest of the buffer is not held up)."""
        if not until:
            return
        pipe = self.redis.pipeline()
        pipe.zrem(self.key("claimed"), *until)
        pipe.zadd(self.key("queue"), dict(until))
        pipe.sadd(self.key("suspect"), *until)
        pipe.execute()

    def hold(self, until: float) -> None:
        self.redis.set(self.key("hold"), until, exat=int(until) + 1)

    def count_failure(self, element_id: str) -> int:
        return int(self.redis.hincrby(self.key("tries"), element_id, 1))

    def waiters(self, element_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        pipe = self.redis.pipeline()
        for element_id in element_ids:
            pipe.lrange(self.waiters_key(element_id), 0, -1)
        rows = cast(list[list[str]], pipe.execute())
        return {eid: [loads(w) for w in raw] for eid, raw in zip(element_ids, rows, strict=True)}

    def done(self, resumed: dict[str, int]) -> set[str]:
        """Drop each element's first `resumed` waiters; forget the elements no waiter arrived at
        since, and return those (one round trip for the whole batch)."""
        pipe = self.redis.pipeline(transaction=False)
        for element_id, count in resumed.items():
            waiters_key = self.waiters_key(element_id)
            pipe.ltrim(waiters_key, count, -1)
            keys = [
                waiters_key,
                self.key("items"),
                self.key("claimed"),
                self.key("suspect"),
                self.key("tries"),
            ]
            pipe.eval(_COMPLETE, len(keys), *keys, element_id)
        forgotten = pipe.execute()[1::2]
        return {eid for eid, gone in zip(resumed, forgotten, strict=True) if gone}

    def has(self, element_id: str) -> bool:
        """Whether the element already waits (its payload is then not needed again)."""
        return bool(self.redis.hexists(self.key("items"), element_id))

    def pending(self) -> bool:
        pipe = self.redis.pipeline()
        pipe.zcard(self.key("queue"))
        pipe.zcard(self.key("claimed"))
        queued, claimed = pipe.execute()
        return bool(queued or claimed)


def enqueue(kind: str, connection: str, elements: dict[str, dict[str, Any]], waiter: Any) -> None:
    """Buffer a stage's elements with its resume signature and make sure a flush will come."""
    settings = get_settings()
    buffer = Buffer(get_redis(), kind, connection)
    buffer.add(elements, dict(waiter))
    _trigger(buffer, _wait(buffer, settings), settings)


def _trigger(buffer: Buffer, wait: float, settings: Settings) -> None:
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
        _send_flush(buffer.kind, buffer.connection, wait, flag)


def _wait(buffer: Buffer, settings: Settings) -> float:
    """Seconds before this buffer's next flush is due (workers/batching.py module doc)."""
    if not settings.zxs_batching:
        return 0.0 if buffer.pending() else -1.0
    size = batch_size(buffer.kind, settings)
    pipe = buffer.redis.pipeline()
    pipe.hlen(inflight_key(buffer.connection))
    pipe.get(door_key(buffer.connection))
    others = [k for k in KINDS if k != buffer.kind]
    for kind in others:
        pipe.scard(Buffer(buffer.redis, kind, buffer.connection).key("waiting"))
    inflight, at_door, *parked = (int(n or 0) for n in pipe.execute())
    # jobs still at the door are on their way: "every job in flight waits here" needs them too
    inflight += at_door
    # with a backlog a Xero request saved is worth more than the seconds a straggler waits
    backlog = KINDS[buffer.kind].xero and inflight > size
    max_wait = settings.zxs_batch_burst_wait if backlog else settings.zxs_batch_max_wait
    return buffer.wait_before_flush(size, max_wait, inflight, sum(parked))


def _trigger_ms(settings: Settings) -> int:
    return int((settings.zxs_batch_max_wait + 1.0) * 1000)


def _send_flush(kind: str, connection: str, countdown: float, trigger: str) -> None:
    app.send_task(
        "zxsync.flush_batch",
        args=[kind, connection, trigger],
        countdown=countdown if countdown else None,
        priority=tenant_priority(connection),
    )


@app.task(name="zxsync.flush_batch")
def flush_batch(kind: str, connection: str, trigger: str = "sweep") -> int:
    """Write one batch of `kind` for `connection` when it is due; returns elements written."""
    settings = get_settings()
    redis_client = get_redis()
    buffer = Buffer(redis_client, kind, connection)
    if trigger in ("due", "scheduled"):
        redis_client.delete(buffer.key(trigger))  # this trigger has arrived
    lock = redis_client.lock(
        f"zxs:lock:{buffer.prefix}", timeout=FLUSH_LOCK_SECONDS, blocking_timeout=0
    )
    if not lock.acquire():
        return 0  # the flusher in flight sends the next flush itself
    renewer = _Renewer(lock)
    try:
        hold = Flush(
            buffer, buffer.fence(), mark_replicas(redis_client, settings.zxs_redis_mark_replicas)
        )
        buffer.suspect_after_restart()
        buffer.reclaim_orphans()
        wait = _wait(buffer, settings)
        if wait < 0:
            redis_client.srem(ACTIVE, buffer.member)
            return 0
        if wait > 0:
            _trigger(buffer, wait, settings)
            return 0
        written = _flush(hold, batch_size(kind, settings), settings)
    finally:
        renewer.stop()
        with suppress(LockError):
            lock.release()
    if buffer.pending():
        _trigger(buffer, _wait(buffer, settings), settings)
    return written


class _Renewer:
    """Keeps the flush lock's short lease alive from a thread while this process works; a killed
    flusher stops renewing, so its buffer is free again within FLUSH_LOCK_SECONDS."""

    def __init__(self, lock: Lock):
        self._lock = lock
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(FLUSH_LOCK_SECONDS / 3):
            with suppress(LockError, RedisError):
                self._lock.reacquire()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()


def _flush(hold: Flush, size: int, settings: Settings) -> int:
    buffer = hold.buffer
    elements = buffer.claim(size)
    if not elements:
        return 0
    ctx = build_context(buffer.connection)
    ctx.flush = hold
    started = time.monotonic()
    try:
        results = KINDS[buffer.kind].handler(ctx, elements)
    except LeaseLost:
        log.warning("batch.lease_lost", kind=buffer.kind, connection=buffer.connection)
        return 0  # the flusher that took the buffer over takes these elements back
    except RateLimited as exc:
        wait = exc.retry_after if exc.retry_after is not None else 5.0
        buffer.release([e.id for e in elements], suspect=False)
        buffer.hold(time.time() + wait)
        log.warning("batch.held", kind=buffer.kind, connection=buffer.connection, wait=wait)
        return 0
    except SyncError as exc:
        if not exc.retryable:
            results = dict.fromkeys((e.id for e in elements), exc)
        else:
            _retry_later(buffer, elements, exc, settings)
            return 0
    log.info(
        "batch.flushed",
        kind=buffer.kind,
        connection=buffer.connection,
        elements=len(elements),
        seconds=round(time.monotonic() - started, 3),
    )
    # an element that may not be looked up yet waits, without spending an attempt
    later = {eid: r.until for eid, r in results.items() if isinstance(r, Later)}
    if later:
        buffer.release_until(later)
    # an element's transient error (its lookup failed) retries that element alone
    transient = {
        eid: r
        for eid, r in results.items()
        if isinstance(r, SyncError) and r.retryable and eid not in later
    }
    if transient:
        by_id = {e.id: e for e in elements}
        for error in {id(r): r for r in transient.values()}.values():
            ids = [eid for eid, r in transient.items() if r is error]
            _retry_later(buffer, [by_id[eid] for eid in ids], error, settings, alone=True)
    _resume(
        buffer, {eid: r for eid, r in results.items() if eid not in transient and eid not in later}
    )
    return len(elements)


def _retry_later(
    buffer: Buffer,
    elements: list[Element],
    exc: SyncError,
    settings: Settings,
    *,
    alone: bool = False,
) -> None:
    """A transient failure: back to the queue as suspects (the request may have been applied);
    an element that failed too often is given up with this error. Its "create may have reached
    Xero" mark stays: the dead letter's replay, or the record's next event, looks it up first."""
    given_up: Results = {}
    retry: list[str] = []
    tries = 0
    for element in elements:
        tries = buffer.count_failure(element.id)
        if tries > settings.zxs_max_retries:
            given_up[element.id] = exc
        else:
            retry.append(element.id)
    countdown = retry_countdown(exc, tries, settings.zxs_retry_backoff_max)
    if alone:  # these elements wait; the rest of the buffer is not held up for them
        buffer.release_until(dict.fromkeys(retry, time.time() + countdown))
    else:
        buffer.release(retry, suspect=True)
        buffer.hold(time.time() + countdown)
    if given_up:
        _resume(buffer, given_up)
    log.warning("batch.retry", kind=buffer.kind, error=str(exc), countdown=round(countdown, 1))


def _resume(buffer: Buffer, results: Results) -> None:
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
                    news.setdefault("outcomes", {})[element_id] = result
        markers = [f"zxs:batch:resumed:{task_id}" for task_id in merged]
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
            if not _continue(signature):
                signature.apply_async()
            note.set(marker, 1, ex=RESUMED_TTL_SECONDS)
            note.srem(buffer.key("waiting"), task_id)
        note.execute()
        finished = buffer.done({eid: len(waiters) for eid, waiters in waiting.items()})
        remaining = {eid: result for eid, result in remaining.items() if eid not in finished}


def _continue(waiter: Signature) -> bool:
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


@app.task(name="zxsync.sweep_batches")
def sweep_batches() -> int:
    """Trigger a flush for every buffer with work (a trigger can die with its worker)."""
    redis_client = get_redis()
    swept = 0
    for member in cast(set[str], redis_client.smembers(ACTIVE)):
        kind, connection = member.split("|", 1)
        if kind in KINDS:
            _send_flush(kind, connection, 0.0, "sweep")
            swept += 1
    return swept
