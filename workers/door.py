"""The door's journal: a job sent to the door is kept until the door takes it in.

kombu's Redis transport pops a message (BRPOP) and records it as unacknowledged in two steps: a
worker killed between them loses the message (README "Dropped messages"). Beat's re-drive
covers the jobs in flight, which the door has taken in; a job lost on its way in was in no
record yet and vanished (the chaos run in CI lost an invoice so: no history, no dead letter,
nothing in Xero). So the sender journals each job in the pipeline that counts it at its door
(workers/pipeline.py `send_job`): `zxs:door-sent:<connection>` (event id -> when sent) and
`zxs:door-jobs:<connection>` (event id -> the job), and the door forgets it as it takes the job
in (`taken_in`, before anything else: from then on the broker redelivers it).

A journaled job sent over `ZXS_STALL_SECONDS` ago that is in none of the door's queue lists is
lost: beat sends it again under its own event id (workers/redrive.py). Each list is first in,
first out, so a job sent before the oldest message of every list is in none of them; one held
by a worker for as long is rare, and then the door's event claim takes one of the two.
Hand-written: kombu has no way to tell a message it dropped.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from typing import Any, cast

import redis

from schemas.wire import loads
from workers import keys

RESEND_BATCH = 1000  # lost jobs sent again per connection and beat tick


def journal(pipe: redis.client.Pipeline, job: dict[str, Any]) -> None:
    """Add to the sender's pipeline: this job is on its way to the door. The job is what a
    relay passed on, not yet validated (the door dead-letters a bad one, naming the field), so
    it is kept as ASCII JSON: a lone surrogate from a webhook's body cannot be UTF-8 encoded."""
    connection, member = job["connection"], _member(job.get("event_id"))
    pipe.zadd(keys.DOOR_SENT(connection), {member: time.time()})
    pipe.hset(keys.DOOR_JOBS(connection), member, json.dumps(job, default=str))


def forget(pipe: redis.client.Pipeline, connection: str, event_id: object) -> None:
    """Add to the door's pipeline: the door has taken this job in."""
    member = _member(event_id)
    pipe.zrem(keys.DOOR_SENT(connection), member)
    pipe.hdel(keys.DOOR_JOBS(connection), member)


def _member(event_id: object) -> str:
    """The journal's name for an event id, one Redis can store whatever the relay sent."""
    return str(event_id or "").encode("utf-8", "backslashreplace").decode("utf-8")


def lost(
    client: redis.Redis, connection: str, door_lists: list[str], stall_seconds: float
) -> list[dict[str, Any]]:
    """The connection's jobs sent over `stall_seconds` ago that are in none of the door's queue
    lists (`door_lists`, one per priority step: workers/backlog.py `priority_lists`)."""
    cutoff = time.time() - stall_seconds
    old = cast(
        list[tuple[str, float]],
        client.zrangebyscore(
            keys.DOOR_SENT(connection), "-inf", cutoff, 0, RESEND_BATCH, withscores=True
        ),
    )
    if not old:
        return []
    oldest = min((_sent_at(client, raw) for raw in _list_tails(client, door_lists)), default=cutoff)
    events = [event_id for event_id, sent in old if sent < oldest]
    if not events:
        return []
    jobs = cast(list[str | None], client.hmget(keys.DOOR_JOBS(connection), events))
    return [json.loads(raw) for raw in jobs if raw]


def _list_tails(client: redis.Redis, door_lists: list[str]) -> list[str]:
    """The next message of each non-empty door list: its oldest (kombu pushes left, pops right)."""
    pipe = client.pipeline(transaction=False)
    for name in door_lists:
        pipe.lindex(name, -1)
    return [raw for raw in pipe.execute() if raw is not None]


def _sent_at(client: redis.Redis, raw: str) -> float:
    """When a queued door message was sent, by its job's journal entry; 0 when it cannot be
    told (a message sent before the journal, or not a job): nothing counts as lost behind it."""
    with contextlib.suppress(ValueError, KeyError, IndexError, TypeError, AttributeError):
        message = loads(raw)
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        job = loads(body)[0][0]
        sent = client.zscore(keys.DOOR_SENT(job["connection"]), _member(job["event_id"]))
        if sent is not None:
            return float(sent)
    return 0.0
