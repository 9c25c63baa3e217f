"""One connection's buffer of one kind in Redis, and its Lua: elements, their waiters, claims.

An element stays here until its answer is stored: a flusher claims elements, and claims still
held when the next flusher takes the lock are a dead flusher's (back as suspects). Keys:
workers/keys.py `BUFFER`.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, cast

import redis
import structlog

from schemas.wire import dumps, loads
from workers import keys
from workers.batching.kinds import KINDS

log = structlog.get_logger("zxsync.batching")


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


# An element put back (a failed request's, a dead flusher's) goes before every element that
# waits, so it is due at once, and each batch at a score of its own, so the next claim takes it
# whole again: a suspect batch is sent again under its Idempotency-Key only whole
# (workers/batching/suspects.py). At one score (0) two batches put back together came back
# mixed, by element id, and both waited the lookup margin (a minute) instead.
FRONT_SECONDS = 1e10


def front(at: float) -> float:
    """The queue score of elements put back at `at`: before any arrival, in the order put back."""
    return at - FRONT_SECONDS


class Buffer:
    """One connection's buffer of one kind, in Redis."""

    def __init__(self, redis_client: redis.Redis, kind: str, connection: str):
        self.redis, self.kind, self.connection = redis_client, kind, connection
        self.member = f"{kind}|{connection}"  # in keys.BATCH_ACTIVE while it has work

    def key(self, name: str) -> str:
        """The buffer's key `name` (workers/keys.py `BUFFER`)."""
        return keys.BUFFER[name](self.kind, self.connection)

    def waiters_key(self, element_id: str) -> str:
        return keys.BUFFER_WAITERS(self.kind, self.connection, element_id)

    def add(self, elements: dict[str, dict[str, Any]], waiter: dict[str, Any]) -> int:
        """Buffer the elements with their waiting task; returns how many elements wait."""
        replace = "1" if KINDS[self.kind].latest_wins else "0"
        pipe = self.redis.pipeline(transaction=False)  # one round trip for a document's elements
        for element_id, payload in elements.items():
            script_keys = [
                self.key("items"),
                self.key("queue"),
                self.key("claimed"),
                self.waiters_key(element_id),
                self.key("waiting"),
                keys.BATCH_ACTIVE(),
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
            pipe.eval(_ADD, len(script_keys), *script_keys, *args)
        counts = pipe.execute()
        return int(counts[-1]) if counts else 0

    def reclaim_orphans(self) -> int:
        """Under the flush lock every claimed element is a dead flusher's: back to the front of
        the queue as suspects, each of its batches whole (they were claimed at one time each)."""
        claimed = cast(
            list[tuple[str, float]], self.redis.zrange(self.key("claimed"), 0, -1, withscores=True)
        )
        if claimed:
            orphans = [element_id for element_id, _ in claimed]
            pipe = self.redis.pipeline()
            pipe.zrem(self.key("claimed"), *orphans)
            pipe.zadd(self.key("queue"), {eid: front(at) for eid, at in claimed})
            pipe.sadd(self.key("suspect"), *orphans)
            pipe.execute()
        return len(claimed)

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

    def state(self, now: float) -> tuple[int, float | None, int, float | None]:
        """(elements due by `now`, the oldest element's time, documents waiting, held until):
        what the flush timing policy decides on (workers/batching/policy.py), in one trip."""
        pipe = self.redis.pipeline()
        pipe.zcount(self.key("queue"), "-inf", now)  # an element released until later is not due
        pipe.zrange(self.key("queue"), 0, 0, withscores=True)
        pipe.scard(self.key("waiting"))
        pipe.get(self.key("hold"))
        count, oldest, waiting, hold = pipe.execute()
        return (
            int(count),
            float(oldest[0][1]) if oldest else None,
            int(waiting),
            float(hold) if hold else None,
        )

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
        """Claimed elements back to the front of the queue (after a failed request), together."""
        if not ids:
            return
        pipe = self.redis.pipeline()
        pipe.zrem(self.key("claimed"), *ids)
        pipe.zadd(self.key("queue"), dict.fromkeys(ids, front(time.time())))
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
            script_keys = [
                waiters_key,
                self.key("items"),
                self.key("claimed"),
                self.key("suspect"),
                self.key("tries"),
            ]
            pipe.eval(_COMPLETE, len(script_keys), *script_keys, element_id)
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
