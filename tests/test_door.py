"""The door's journal (workers/door.py): a job lost on its way into the door is sent again.

kombu pops a message and records it as unacknowledged in two steps, so a worker killed in
between loses it. The re-drive covered jobs in flight; a job lost at the door was in no record
yet: the chaos run in CI (83d55d8) lost ZINV-00266 so, with no history, no dead letter and
nothing in Xero."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import fakeredis
import pytest

from sandbox.seed import build_dataset, load_dataset
from workers import door, keys, pipeline
from workers.app import STAGE_QUEUES, app
from workers.backlog import priority_lists


def job(connection: str, event_id: str) -> dict[str, Any]:
    return {
        "connection": connection,
        "module": "Invoices",
        "record_id": event_id,
        "event": "insert",
        "event_id": event_id,
    }


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> fakeredis.FakeRedis:
    fake = fakeredis.FakeRedis(decode_responses=True)
    monkeypatch.setattr(pipeline, "get_redis", lambda: fake)
    monkeypatch.setattr(app, "send_task", lambda name, **options: None)
    return fake


def test_a_job_is_journaled_when_sent_and_forgotten_when_the_door_takes_it_in(
    store: fakeredis.FakeRedis,
) -> None:
    pipeline.send_job(pipeline.INGEST_TASK, [job("acme", "e-1")])
    pipeline.send_job(pipeline.INGEST_TASK, [job("acme", "e-2")])
    assert store.zcard(keys.DOOR_SENT("acme")) == 2
    pipeline.taken_in(job("acme", "e-1"))
    pipeline.taken_in(job("acme", "e-2"), first=False)  # a redelivery is forgotten too
    assert store.zcard(keys.DOOR_SENT("acme")) == 0 and store.hlen(keys.DOOR_JOBS("acme")) == 0
    assert store.get(pipeline.door_key("acme")) == "1"  # counted out once: the first delivery


def test_a_journaled_job_is_lost_only_once_it_is_old_and_in_no_door_list(
    store: fakeredis.FakeRedis,
) -> None:
    pipeline.send_job(pipeline.INGEST_TASK, [job("acme", "e-1")])
    lists = priority_lists(STAGE_QUEUES[pipeline.INGEST_TASK])
    assert door.lost(store, "acme", lists, stall_seconds=60) == []  # not old yet
    assert door.lost(store, "acme", lists, stall_seconds=0) == [job("acme", "e-1")]
    store.lpush(lists[0], "not a kombu message")
    # a queued message that cannot be read: nothing counts as lost behind it
    assert door.lost(store, "acme", lists, stall_seconds=0) == []


@pytest.mark.integration
def test_a_job_lost_on_its_way_into_the_door_is_sent_again_and_created_once(
    make_stack: Callable[..., Any], wait_for_outcomes: Callable[..., Any]
) -> None:
    """Three jobs wait at the door (no worker yet); the oldest is popped and dropped, as a
    worker killed between kombu's BRPOP and its unacked bookkeeping drops it. The journal tells
    it from the two still queued (read from kombu's own messages), and beat's re-drive sends it
    again: each invoice is created exactly once."""
    from workers.redis import get_redis
    from workers.redrive import redrive_stalled

    stack = make_stack(extra_env={"ZXS_STALL_SECONDS": "0.5"})
    conn = stack.connections[0]
    data = load_dataset(
        stack.zoho, conn.zoho_org_id, build_dataset(invoices=3, accounts=1, products=1, seed=41)
    )
    ids = [str(inv["id"]) for inv in data.invoices]
    for record_id in ids:  # one at a time: their journal times tell them apart
        pipeline.submit_records(conn.name, [record_id], "door")
        time.sleep(0.01)
    client = get_redis()
    lists = priority_lists(STAGE_QUEUES[pipeline.INGEST_TASK])
    [door_list] = [name for name in lists if client.llen(name)]
    assert client.llen(door_list) == 3
    client.rpop(door_list)  # the oldest, popped by a worker that died before recording it
    time.sleep(0.6)
    assert [j["record_id"] for j in door.lost(client, conn.name, lists, 0.5)] == [ids[0]]
    stack.start_worker(concurrency=2)
    keys_ = [f"{conn.name}:Invoices:{rid}" for rid in ids]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and client.hlen(keys.OUTCOMES(conn.name)) < 2:
        time.sleep(0.2)
    redrive_stalled()  # what beat runs every minute
    outcomes = wait_for_outcomes(conn.name, keys_, timeout=60)
    assert {outcome for outcome, _ in outcomes.values()} == {"created"}, outcomes
    references = sorted(inv["Reference"] for inv in stack.xero.invoices(conn.xero_tenant_id))
    assert references == sorted(str(inv["Invoice_Number"]) for inv in data.invoices)
    assert client.zcard(keys.DOOR_SENT(conn.name)) == 0


def test_a_job_with_text_redis_cannot_encode_is_journaled_and_forgotten(
    store: fakeredis.FakeRedis,
) -> None:
    """The relay passes on what a webhook's body said, lone surrogates included (the door
    dead-letters it, naming the field): the journal must not refuse it. It did, and the relay
    answered 503 (tests/test_relay_schemathesis.py on 137e2ef)."""
    odd = {**job("acme", "zoho-k-\udb8f\uddbc"), "module": "\u0081>\udb8f", "record_id": "\ud964"}
    pipeline.send_job(pipeline.INGEST_TASK, [odd])
    assert store.zcard(keys.DOOR_SENT("acme")) == 1
    pipeline.taken_in(odd)
    assert store.zcard(keys.DOOR_SENT("acme")) == 0 and store.hlen(keys.DOOR_JOBS("acme")) == 0
