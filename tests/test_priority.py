"""Tenant priority (workers/pipeline.py): a quiet tenant's job overtakes a bursting tenant's,
at the door as at every stage."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest

from workers import pipeline
from workers.app import PRIORITY_STEPS, app
from workers.history import inflight_key


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> fakeredis.FakeRedis:
    """The pipeline's Redis, a fake."""
    fake = fakeredis.FakeRedis(decode_responses=True)
    monkeypatch.setattr(pipeline, "get_redis", lambda: fake)
    return fake


@pytest.fixture
def sent(
    monkeypatch: pytest.MonkeyPatch, store: fakeredis.FakeRedis
) -> list[tuple[str, dict[str, Any]]]:
    """What would reach the broker is recorded: (task, send options)."""
    sends: list[tuple[str, dict[str, Any]]] = []

    def send_task(name: str, **options: Any) -> None:
        sends.append((name, options))

    monkeypatch.setattr(app, "send_task", send_task)
    return sends


def job(connection: Any, record: str = "1") -> dict[str, Any]:
    return {"connection": connection, "module": "Invoices", "record_id": record}


def test_a_burst_goes_to_the_door_at_falling_priority_and_a_quiet_tenant_stays_first(
    sent: list[tuple[str, dict[str, Any]]],
) -> None:
    for n in range(120):
        pipeline.send_job(pipeline.INGEST_TASK, [job("busy", str(n))])
    pipeline.send_job(pipeline.INGEST_TASK, [job("quiet")])
    busy = [options["priority"] for _, options in sent[:-1]]
    assert busy[:50] == [PRIORITY_STEPS[0]] * 50
    assert busy[50:100] == [PRIORITY_STEPS[1]] * 50
    assert busy[100:] == [PRIORITY_STEPS[2]] * 20
    assert sent[-1] == (pipeline.INGEST_TASK, {"args": [job("quiet")], "priority": 0})


def test_jobs_taken_in_and_jobs_in_flight_set_the_door_priority(
    sent: list[tuple[str, dict[str, Any]]], store: fakeredis.FakeRedis
) -> None:
    for n in range(60):
        pipeline.send_job(pipeline.INGEST_TASK, [job("t", str(n))])
    for n in range(60):
        pipeline.taken_in(job("t", str(n)))
    pipeline.taken_in(job("t"))  # a job sent before counting began never goes below zero
    pipeline.send_job(pipeline.INGEST_TASK, [job("t", "next")])
    assert sent[-1][1]["priority"] == PRIORITY_STEPS[0]
    store.hset(inflight_key("t"), mapping={f"k{n}": "{}" for n in range(200)})
    pipeline.send_job(pipeline.INGEST_TASK, [job("t", "later")])
    assert sent[-1][1]["priority"] == PRIORITY_STEPS[-1]
    assert pipeline.tenant_priority("t") == PRIORITY_STEPS[-1]


def test_a_job_without_a_usable_connection_still_reaches_the_door(
    sent: list[tuple[str, dict[str, Any]]],
) -> None:
    """It is the door that dead-letters it, naming the field; the sender only passes it on."""
    pipeline.send_job(pipeline.INGEST_TASK, [job(42)])
    pipeline.send_job(pipeline.INGEST_TASK, ["not a job"])
    pipeline.taken_in("not a job")
    assert sent == [
        (pipeline.INGEST_TASK, {"args": [job(42)]}),
        (pipeline.INGEST_TASK, {"args": ["not a job"]}),
    ]


def test_backfill_jobs_go_last_at_the_door_and_at_every_stage(
    sent: list[tuple[str, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17: history brought across by `zxsync backfill` never overtakes a live event."""
    from schemas.jobs import StageMessage, SyncJob

    pipeline.send_job(pipeline.INGEST_TASK, [{**job("idle"), "event_id": "backfill-1"}])
    pipeline.send_job(pipeline.INGEST_TASK, [{**job("idle"), "event_id": "live-1"}])
    assert [options["priority"] for _, options in sent] == [PRIORITY_STEPS[-1], 0]
    chains: list[dict[str, Any]] = []
    monkeypatch.setattr(
        pipeline,
        "chain",
        lambda *sigs: type(
            "C", (), {"apply_async": lambda self: chains.append(dict(sigs[0].options))}
        )(),
    )
    for event_id in ("backfill-2", "live-2"):
        pipeline.start_pipeline(
            StageMessage(
                job=SyncJob(
                    connection="idle",
                    module="Invoices",
                    record_id="2",
                    event="insert",
                    event_id=event_id,
                )
            )
        )
    assert [c["priority"] for c in chains] == [PRIORITY_STEPS[-1], 0]


def test_a_backfill_job_counts_at_its_tenants_door(
    sent: list[tuple[str, dict[str, Any]]], store: fakeredis.FakeRedis
) -> None:
    """Batching flushes when every job in flight or at the door waits in a buffer: a backfill
    job on its way must count, or its batches go out a few elements at a time."""
    pipeline.send_job(pipeline.INGEST_TASK, [{**job("bf"), "event_id": "backfill-1"}])
    assert store.get(pipeline.door_key("bf")) == "1"


def test_every_stage_is_shown_by_its_record_key_not_by_the_whole_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue #19: Celery writes a repr of each task's arguments into the message and its events
    (Flower shows it); of a StageMessage that is the whole document, customer details included,
    built again at every hop. Each stage names its record instead."""
    from schemas.jobs import StageMessage, SyncJob

    monkeypatch.setattr(pipeline, "get_redis", lambda: fakeredis.FakeRedis())
    chains: list[list[dict[str, Any]]] = []
    monkeypatch.setattr(
        pipeline,
        "chain",
        lambda *sigs: type(
            "C", (), {"apply_async": lambda self: chains.append([dict(s.options) for s in sigs])}
        )(),
    )
    pipeline.start_pipeline(
        StageMessage(
            job=SyncJob(
                connection="acme", module="Invoices", record_id="7", event="insert", event_id="e-7"
            )
        )
    )
    [options] = chains
    assert len(options) == len(pipeline.SALES_STAGES)
    assert {o["argsrepr"] for o in options} == {"('acme:Invoices:7',)"}
