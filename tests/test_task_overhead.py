"""Celery's costs per task that bought nothing (issue #19.1, measured with bench/profile.py).

A stage that parks on a batch raised Celery's `Ignore`, and the tracer built an `ExceptionInfo`
with a formatted traceback for every parked stage (about a tenth of a worker's CPU in the raw
bench): the task now clears its chain and returns, and the flush resumes it as before. Task
events went out whether or not anything listened."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from celery.canvas import Signature

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
    history = SimpleNamespace(log=lambda *a, **k: None)
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
