"""Flushes on threads of the pool process (workers/batching/flush.py, issue #19): the flush task
returns while its batch waits on Xero, the buffer stays locked (and its lease renewed) until the
batch is written, and past ZXS_FLUSH_THREADS a flush runs inline."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast

import pytest
import redis
from celery.canvas import Signature

from schemas.errors import RateLimited, ServerError
from schemas.links import WrittenBack
from workers import batching, keys
from workers.batching import Buffer, Element, LeaseLost, Results
from workers.batching import flush as flush_module
from workers.batching.fence import Flush
from workers.settings import get_settings

KIND = "slow_things"


class Handler:
    """A batch handler that waits until released for the connections it is told to block."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.blocking: set[str] = set()
        self.threads: list[str] = []
        self.started = threading.Event()
        self.resumed: list[Signature] = []  # the waiting stages the flush sent on

    def __call__(self, ctx: Any, elements: list[Element]) -> Results:
        self.threads.append(threading.current_thread().name)
        self.started.set()
        if ctx.connection.name in self.blocking:
            assert self.release.wait(10), "the test never released the handler"
        return {e.id: WrittenBack(written=True) for e in elements}


@pytest.fixture
def handler(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> Iterator[Handler]:
    """A throwaway kind whose handler the test holds; the flush's Redis is the test's, its
    context a stub, its next flush and its resumes recorded instead of sent."""
    fake = Handler()
    monkeypatch.setitem(batching.KINDS, KIND, batching.Kind(fake, xero=True, latest_wins=False))
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    monkeypatch.setattr(flush_module, "get_redis", lambda: client)
    monkeypatch.setattr(
        flush_module,
        "build_context",
        lambda name: SimpleNamespace(connection=SimpleNamespace(name=name), flush=None),
    )
    monkeypatch.setattr(flush_module, "schedule_flush", lambda *a: None)
    monkeypatch.setattr(Signature, "apply_async", lambda sig, *a, **kw: fake.resumed.append(sig))
    yield fake
    fake.release.set()
    assert flush_module.FLUSH_THREADS.drain(10)
    get_settings.cache_clear()


def threads(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    monkeypatch.setenv("ZXS_FLUSH_THREADS", str(count))
    get_settings.cache_clear()


def buffered(redis_url: str, *element_ids: str) -> Buffer:
    """A buffer on a fresh connection with these elements waiting, each for its own task."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    buffer = Buffer(client, KIND, f"unit-{uuid.uuid4().hex[:8]}")
    for element_id in element_ids:
        task_id = f"{element_id}-{uuid.uuid4().hex[:6]}"
        options = {"task_id": task_id, "chain": None}
        buffer.add({element_id: {}}, {"task": "t", "args": [{}], "kwargs": {}, "options": options})
    return buffer


def locked(buffer: Buffer) -> bool:
    return bool(buffer.redis.exists(keys.BATCH_LOCK(buffer.kind, buffer.connection)))


def test_a_flush_waits_on_a_thread_and_holds_its_buffer_until_written(
    handler: Handler, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    threads(monkeypatch, 1)
    slow = buffered(redis_url, "a", "b")
    handler.blocking.add(slow.connection)
    started = time.monotonic()
    assert flush_module.flush_batch(KIND, slow.connection, "due") == 0  # handed to a thread
    assert time.monotonic() - started < 5
    assert handler.started.wait(5) and handler.threads == ["zxs-flush"]
    # while it waits on "Xero": the buffer is locked, a second flush of it does nothing
    assert locked(slow)
    assert flush_module.flush_batch(KIND, slow.connection, "due") == 0
    assert handler.threads == ["zxs-flush"]
    # the one flush thread is busy: another tenant's flush runs inline, in this thread
    other = buffered(redis_url, "c")
    assert flush_module.flush_batch(KIND, other.connection, "due") == 1
    assert handler.threads == ["zxs-flush", threading.current_thread().name]
    handler.release.set()
    assert flush_module.FLUSH_THREADS.drain(10)
    assert not locked(slow) and not slow.pending()  # written, its waiters resumed, unlocked
    assert len(handler.resumed) == 3


def test_without_flush_threads_a_flush_runs_in_its_task(
    handler: Handler, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    threads(monkeypatch, 0)
    buffer = buffered(redis_url, "a")
    assert flush_module.flush_batch(KIND, buffer.connection, "due") == 1
    assert handler.threads == [threading.current_thread().name]
    assert not locked(buffer) and not buffer.pending()


def test_a_flush_longer_than_its_lease_keeps_the_buffer(
    handler: Handler, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    """The renewer (another thread) renews the lease the flush took: a flush waiting on Xero
    longer than FLUSH_LOCK_SECONDS still holds the buffer, so no second flusher starts."""
    threads(monkeypatch, 1)
    monkeypatch.setattr(flush_module, "FLUSH_LOCK_SECONDS", 0.6)
    buffer = buffered(redis_url, "a")
    handler.blocking.add(buffer.connection)
    flush_module.flush_batch(KIND, buffer.connection, "due")
    assert handler.started.wait(5)
    time.sleep(1.5)  # more than two leases
    assert locked(buffer)
    handler.release.set()
    assert flush_module.FLUSH_THREADS.drain(10)
    assert not locked(buffer)


def test_a_flush_without_a_thread_to_be_had_runs_in_its_task(
    handler: Handler, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    threads(monkeypatch, 4)
    buffer = buffered(redis_url, "a")

    start = threading.Thread.start

    def refuse(thread: threading.Thread) -> None:
        if thread.name == "zxs-flush":  # the lease's renewer still starts
            raise RuntimeError("can't start new thread")
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", refuse)
    assert flush_module.flush_batch(KIND, buffer.connection, "due") == 1
    assert handler.threads == [threading.current_thread().name]
    assert flush_module.FLUSH_THREADS.busy() == 0 and not locked(buffer)


# ------------------------------------------- several batches of one kind under one flusher


class Batches:
    """A batch handler that holds every batch until `parties` of them are in flight at once
    (a barrier: one flusher sending one batch at a time never gets there), then answers each
    as `answer` says for the batch's first element."""

    def __init__(self, parties: int, answer: dict[str, Exception] | None = None) -> None:
        self.barrier = threading.Barrier(parties, timeout=5)
        self.answer = answer or {}
        self.calls: list[tuple[int, list[str], Any]] = []  # thread, element ids, its Flush
        self._lock = threading.Lock()

    def __call__(self, ctx: Any, elements: list[Element]) -> Results:
        ids = [e.id for e in elements]
        with self._lock:
            self.calls.append((threading.get_ident(), ids, ctx.flush))
        self.barrier.wait()
        error = self.answer.get(ids[0])
        if error is not None:
            raise error
        return {eid: WrittenBack(written=True) for eid in ids}


def several(monkeypatch: pytest.MonkeyPatch, handler: Handler, batches: Batches) -> None:
    """Batches of 2, up to 3 of them in flight under one flusher, flushed inline."""
    monkeypatch.setitem(batching.KINDS, KIND, batching.Kind(batches, xero=True, latest_wins=False))
    monkeypatch.setenv("ZXS_BATCH_SIZE", "2")
    monkeypatch.setenv("ZXS_FLUSH_BATCHES", "3")
    threads(monkeypatch, 0)


def claimed(buffer: Buffer) -> set[str]:
    return set(cast(list[str], buffer.redis.zrange(buffer.key("claimed"), 0, -1)))


def test_one_flusher_sends_several_due_batches_of_a_kind_at_once(
    handler: Handler, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    """Six elements due in batches of 2: the one flusher (one lock, one fencing token) claims
    three batches and has all three in flight together, each on its own thread."""
    batches = Batches(3)
    several(monkeypatch, handler, batches)
    buffer = buffered(redis_url, *"abcdef")
    assert flush_module.flush_batch(KIND, buffer.connection, "due") == 6
    assert len(batches.calls) == 3 and len({thread for thread, _, _ in batches.calls}) == 3
    sent = [eid for _, ids, _ in batches.calls for eid in ids]
    assert sorted(sent) == list("abcdef")  # each element in one batch only
    assert {id(hold) for _, _, hold in batches.calls} == {id(batches.calls[0][2])}
    assert buffer.redis.get(buffer.key("fence")) == "1"  # one flusher: one token taken
    assert len(handler.resumed) == 6 and not buffer.pending() and not locked(buffer)


def test_a_rate_limited_batch_goes_back_untouched_and_the_others_outcomes_are_kept(
    handler: Handler, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    """One of two batches in flight together is answered 429: its elements go back to the
    queue as they were (not suspects) and the buffer holds until Retry-After; the other batch's
    waiters are resumed with their outcomes."""
    batches = Batches(2, {"a": RateLimited("Xero", "minute", 30.0)})
    several(monkeypatch, handler, batches)
    buffer = buffered(redis_url, *"abcd")
    assert flush_module.flush_batch(KIND, buffer.connection, "due") == 2
    assert sorted(eid for _, ids, _ in batches.calls for eid in ids) == list("abcd")
    resumed = {eid for sig in handler.resumed for eid in sig.kwargs["batch"]["outcomes"]}
    assert resumed == {"c", "d"}
    assert buffer.redis.zrange(buffer.key("queue"), 0, -1) == ["a", "b"] and not claimed(buffer)
    assert not buffer.redis.smembers(buffer.key("suspect"))  # untouched: nothing was sent
    assert float(cast(str, buffer.redis.get(buffer.key("hold")))) > time.time() + 25


def test_a_transient_failure_makes_suspects_of_its_batch_only(
    handler: Handler, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    """A batch whose request failed (Xero may have applied it) comes back as suspects, to be
    looked up before any create; the batch in flight beside it is resumed as answered."""
    batches = Batches(2, {"a": ServerError("Xero", "HTTP 500: An error occurred in Xero.")})
    several(monkeypatch, handler, batches)
    buffer = buffered(redis_url, *"abcd")
    assert flush_module.flush_batch(KIND, buffer.connection, "due") == 2
    resumed = {eid for sig in handler.resumed for eid in sig.kwargs["batch"]["outcomes"]}
    assert resumed == {"c", "d"}
    assert buffer.redis.smembers(buffer.key("suspect")) == {"a", "b"}
    assert set(buffer.redis.zrange(buffer.key("queue"), 0, -1)) == {"a", "b"}
    assert buffer.redis.hgetall(buffer.key("tries")) == {"a": "1", "b": "1"}
    assert buffer.redis.exists(buffer.key("hold"))


def test_a_lease_lost_in_one_batch_leaves_every_claim_to_the_next_flusher(
    handler: Handler, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    """A flusher fenced out while its batches were in flight resumes and releases nothing: the
    flusher that took the buffer over takes all its claimed elements back as suspects."""
    batches = Batches(2, {"a": LeaseLost("another flusher holds the buffer")})
    several(monkeypatch, handler, batches)
    buffer = buffered(redis_url, *"abcd")
    assert flush_module.flush_batch(KIND, buffer.connection, "due") == 0
    assert not handler.resumed
    assert claimed(buffer) == set("abcd")


def test_two_kinds_of_a_tenant_due_on_its_last_pace_token_send_one_part_full_batch_not_two(
    handler: Handler, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    """Two flushes of one tenant (its items and its invoices, say) that both saw its last pace
    token (workers/batching/policy.py) both spent it: the bucket went below zero, and the
    tenant's next part-full flush waited up to 2.4 s (an item behind the tenant's invoices for
    4.5 s in the tenants bench). A part-full batch now takes its token as it is claimed; the
    second flush puts its batch back to wait for the next."""
    conns = [
        {"name": f"t{n}", "xero_tenant_id": f"t{n}", "zoho_org_id": f"o{n}"} for n in range(20)
    ]
    monkeypatch.setenv("ZXS_CONNECTIONS", json.dumps(conns))
    monkeypatch.setenv("ZXS_XERO_APP_PER_MINUTE", "1000")  # a share of 50 a minute each
    get_settings.cache_clear()
    monkeypatch.setitem(batching.KINDS, "other_things", batching.KINDS[KIND])
    items = buffered(redis_url, "i1")
    invoices = Buffer(items.redis, "other_things", items.connection)
    invoices.add({"v1": {}}, {"task": "t", "args": [{}], "kwargs": {}, "options": {"task_id": "v"}})
    pace = keys.BATCH_PACE(items.connection)
    items.redis.hset(pace, mapping={"tokens": "1.0", "at": str(time.time())})
    settings = get_settings()
    assert flush_module._flush(Flush(items, items.fence()), 50, settings) == 1
    assert flush_module._flush(Flush(invoices, invoices.fence()), 50, settings) == 0
    assert invoices.state(time.time())[0] == 1  # back in its queue, unsent
    assert float(items.redis.hget(pace, "tokens") or 0) >= 0
