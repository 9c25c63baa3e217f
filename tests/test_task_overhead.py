"""Celery's costs per task that bought nothing (issue #19.1, measured with bench/profile.py).

A stage that parks on a batch raised Celery's `Ignore`, and the tracer built an `ExceptionInfo`
with a formatted traceback for every parked stage (about a tenth of a worker's CPU in the raw
bench): the task now clears its chain and returns, and the flush resumes it as before. Task
events went out whether or not anything listened."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from celery.canvas import Signature

from schemas.history import HistoryEvent
from schemas.jobs import StageMessage, SyncJob
from workers import stage as stage_module
from workers.batching import AwaitingBatch
from workers.context import StageContext
from workers.policies.poison import Poison
from workers.stage import StageTask, stage


@stage("zxsync.test_parks")
def parks(msg: StageMessage, ctx: StageContext) -> StageMessage:
    raise AwaitingBatch("things", {"a": {"n": 1}})


def test_a_parked_stage_succeeds_without_its_chain_and_waits_in_the_buffer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parked: list[tuple[str, dict[str, Any]]] = []
    history = SimpleNamespace(log=lambda *a, **k: None, gathered=contextlib.nullcontext)
    ctx = SimpleNamespace(
        connection=SimpleNamespace(name="acme"), attempt=0, batch=None, history=history
    )
    monkeypatch.setattr(Poison, "before", lambda self, task: None)  # no Redis to count in
    monkeypatch.setattr(StageTask, "context_for", lambda self, connection: ctx)
    monkeypatch.setattr(
        stage_module, "enqueue", lambda kind, conn, els, resume: parked.append((kind, els))
    )
    job = SyncJob(
        connection="acme", module="Invoices", record_id="1", event="insert", event_id="e-1"
    )
    message = StageMessage(job=job).model_dump(mode="json")
    sent: list[str] = []
    monkeypatch.setattr(Signature, "apply_async", lambda sig, *a, **k: sent.append(sig.task))
    nxt = {"task": "zxsync.next", "args": [], "kwargs": {}, "options": {}}
    result = parks.apply(args=(message,), chain=[nxt])
    assert parked == [("things", {"a": {"n": 1}})]
    assert sent == []  # the rest of the chain goes on from the flush, not from here
    assert result.state == "SUCCESS"  # not IGNORED: no exception, no traceback built
    assert result.result is None


def test_no_task_event_is_sent_until_a_monitor_asks_for_them() -> None:
    """Task events cost three Redis publishes per task (19 per invoice) and a tenth of the
    worker's CPU; Flower turns them on itself (`enable_events`, every 5 s while it runs), so
    they are sent while someone watches, and never a task-sent event per publish."""
    from workers.app import app

    assert app.conf.task_send_sent_event is False
    assert app.conf.worker_send_task_events is False


def test_the_broker_channel_builds_no_redis_client_per_publish_or_ack(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kombu's Redis channel built a redis-py client for every publish and every ack, and the
    construction cost more CPU than the command (2.5 ms per invoice in the raw bench): the
    channel keeps one per connection pool, and the messages still go and come as before."""
    import redis
    from kombu import Connection, Exchange, Queue

    from workers import broker

    built: list[object] = []
    real_init = redis.Redis.__init__

    def counting_init(self: redis.Redis, *args: Any, **kwargs: Any) -> None:
        built.append(self)
        real_init(self, *args, **kwargs)

    queue = Queue("zxs.test_clients", Exchange("zxs.test_clients", type="direct"), "clients")
    with Connection(redis_url, transport=broker.Transport) as connection:
        channel = connection.channel()
        producer = connection.Producer(channel)
        queue(channel).declare()
        queue(channel).purge()
        producer.publish({"n": 0}, exchange=queue.exchange, routing_key="clients")
        monkeypatch.setattr(redis.Redis, "__init__", counting_init)
        for n in range(1, 6):
            producer.publish({"n": n}, exchange=queue.exchange, routing_key="clients")
        received = []
        for _ in range(6):
            message = queue(channel).get(no_ack=False)
            assert message is not None
            received.append(message.payload["n"])
            message.ack()
        assert sorted(received) == list(range(6))
        assert built == []  # five publishes, six gets and acks: the channel's one client
        queue(channel).delete()


@dataclass
class Writes:
    """The database transactions and Redis round trips counted while a test runs."""

    transactions: list[object] = field(default_factory=list)
    round_trips: list[str] = field(default_factory=list)


def count_writes(monkeypatch: pytest.MonkeyPatch) -> Writes:
    """From now on, until `monkeypatch.undo()`."""
    import redis

    from workers.store import Database

    counted = Writes()
    real_begin = Database.begin
    real_command, real_execute = redis.Redis.execute_command, redis.client.Pipeline.execute

    def begin(self: Database, **kwargs: Any) -> Any:
        counted.transactions.append(self)
        return real_begin(self, **kwargs)

    def command(self: redis.Redis, *args: Any, **kwargs: Any) -> Any:
        counted.round_trips.append(str(args[0]))
        return real_command(self, *args, **kwargs)

    def execute(self: redis.client.Pipeline, *args: Any, **kwargs: Any) -> Any:
        counted.round_trips.append("pipeline")
        return real_execute(self, *args, **kwargs)

    monkeypatch.setattr(Database, "begin", begin)
    monkeypatch.setattr(redis.Redis, "execute_command", command)
    monkeypatch.setattr(redis.client.Pipeline, "execute", execute)
    return counted


@stage("zxsync.test_finishes")
def finishes(msg: StageMessage, ctx: StageContext) -> StageMessage:
    key = f"{msg.job.connection}:{msg.job.module}:{msg.job.record_id}"
    ctx.history.log(key, "mapping", HistoryEvent.DECISION, detail="a decision")
    ctx.history.finish(msg.job.connection, key, "created", "INV-1")
    return msg


def test_a_stage_run_writes_its_history_in_one_transaction_and_one_redis_round_trip(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stage run's history rows, its outcome and their Redis updates cost a transaction and
    a round trip each (a decision, an outcome and the stage's end: three of each); they are
    written together when the run ends, with the same rows, outcome and in-flight state."""
    import fakeredis

    from workers.history import RecordHistory, inflight_key, progress_key
    from workers.store import get_database

    client = fakeredis.FakeRedis(decode_responses=True)
    finished: list[str] = []
    history = RecordHistory(client, on_finish=lambda r, conn, key: finished.append(key))
    ctx = SimpleNamespace(
        connection=SimpleNamespace(name="acme"), attempt=0, batch=None, history=history
    )
    monkeypatch.setattr(Poison, "before", lambda self, task: None)  # no Redis to count in
    monkeypatch.setattr(StageTask, "context_for", lambda self, connection: ctx)
    key = "acme:Invoices:1"
    history.start("acme", key, {"record_id": "1"})
    job = SyncJob(
        connection="acme", module="Invoices", record_id="1", event="insert", event_id="e-1"
    )
    message = StageMessage(job=job).model_dump(mode="json")
    counted = count_writes(monkeypatch)
    result = finishes.apply(args=(message,))
    assert result.state == "SUCCESS"
    assert len(counted.transactions) == 1 and counted.round_trips == ["pipeline"]
    monkeypatch.undo()
    events = [(e["stage"], e["event"]) for e in get_database().history(key)]
    assert events == [("mapping", "decision"), ("zxsync.test_finishes", "done")]
    assert history.outcomes("acme") == {key: ("created", "INV-1")}
    assert finished == [key]
    assert client.hlen(inflight_key("acme")) == 0 and client.zcard(progress_key("acme")) == 0


def test_a_job_taken_in_is_put_in_flight_and_logged_in_one_round_trip(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The door put a job in flight (a round trip) and logged it accepted (a transaction and a
    round trip): one of each now, written before the job is admitted to its first stage."""
    import fakeredis

    from tasks import ingest
    from workers.history import RecordHistory, inflight_key, progress_key
    from workers.store import get_database

    client = fakeredis.FakeRedis(decode_responses=True)
    history = RecordHistory(client)
    seen_at_admission: list[tuple[int, list[str], int, int, int]] = []

    def admit(redis_client: Any, settings: Any, message: StageMessage, **_: Any) -> str:
        before = len(counted.transactions), list(counted.round_trips)
        key = "acme:Invoices:1"
        in_flight = client.hlen(inflight_key("acme")), client.zcard(progress_key("acme"))
        seen_at_admission.append((*before, *in_flight, len(get_database().history(key))))
        return "admitted"

    claims = SimpleNamespace(claim_event=lambda job, task_id: True)
    ctx = SimpleNamespace(history=history, idempotency=claims, redis=client, settings=None)
    monkeypatch.setattr(Poison, "before", lambda self, task: None)
    monkeypatch.setattr(StageTask, "context_for", lambda self, connection: ctx)
    monkeypatch.setattr(ingest, "admit", admit)
    monkeypatch.setattr(ingest, "taken_in", lambda payload, **_: None)
    job = SyncJob(
        connection="acme", module="Invoices", record_id="1", event="insert", event_id="e-1"
    )
    counted = count_writes(monkeypatch)
    result = ingest.ingest.apply(args=(job.model_dump(mode="json"),))
    assert result.result == "admitted"
    assert seen_at_admission == [(1, ["pipeline"], 1, 1, 1)]
