"""A finished stage runs the next stages of its chain in its own task (issue #19): each broker
hop between stages cost a publish, a late ack, a task run and its policies, more CPU than most
stages' own work. What must not change: a stage that waits on a batch is parked with the rest
of its chain, one that fails runs as its own task under the app's policies and leaves no
history from the try, and a stage another worker serves is sent to it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import fakeredis
import pytest
from celery.app.trace import build_tracer
from celery.canvas import Signature
from celery.exceptions import SoftTimeLimitExceeded

from schemas.connection import Connection
from schemas.errors import InvalidRecord
from schemas.history import HistoryEvent
from schemas.jobs import StageMessage, SyncJob
from workers import stage as stage_module
from workers.app import STAGE_QUEUES, app
from workers.batching import CONTINUATIONS, AwaitingBatch, Chained
from workers.context import CallsNotHere, StageContext
from workers.history import RecordHistory
from workers.outcomes import finished
from workers.policies.poison import Poison
from workers.settings import get_settings
from workers.stage import RUN_HERE, StageTask, stage
from workers.store import get_database


def _key(msg: StageMessage) -> str:
    return f"{msg.job.connection}:{msg.job.module}:{msg.job.record_id}"


@stage("zxsync.test_fused_first")
def first(msg: StageMessage, ctx: StageContext) -> StageMessage:
    return msg.model_copy(update={"xero_invoice_number": "INV-1"})


@stage("zxsync.test_fused_second")
def second(msg: StageMessage, ctx: StageContext) -> StageMessage:
    assert msg.xero_invoice_number == "INV-1"  # the first stage's result, not its input
    return msg.model_copy(update={"xero_invoice_status": "AUTHORISED"})


@stage("zxsync.test_fused_waits")
def waits(msg: StageMessage, ctx: StageContext) -> StageMessage:
    if ctx.batch is None:
        raise AwaitingBatch("things", {"a": {"n": 1}})
    return msg


@stage("zxsync.test_fused_fails")
def fails(msg: StageMessage, ctx: StageContext) -> StageMessage:
    ctx.history.log(_key(msg), "zxsync.test_fused_fails", HistoryEvent.DECISION, detail="tried")
    raise InvalidRecord(f"Invoices {msg.job.record_id}", "Account_Name", "no account")


@stage("zxsync.test_fused_out_of_time")
def out_of_time(msg: StageMessage, ctx: StageContext) -> StageMessage:
    raise SoftTimeLimitExceeded()


@stage("zxsync.test_fused_reads_zoho")
def reads_zoho(msg: StageMessage, ctx: StageContext) -> StageMessage:
    assert ctx.zoho is not None
    return msg.model_copy(update={"xero_contact_id": "read"})


class Context(SimpleNamespace):
    """A stage's context with what these tests look at; its API clients refuse a call where
    the real ones do (StageContext._refuse_calls)."""

    @property
    def zoho(self) -> str:
        StageContext._refuse_calls(self, "Zoho")  # type: ignore[arg-type]
        return "a Zoho client"


@dataclass
class Run:
    """One task run's effects: the tasks it sent and the batches it parked stages in."""

    redis: fakeredis.FakeRedis
    sent: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)
    parked: list[tuple[str, str, dict[str, Any], Signature]] = field(default_factory=list)

    def history(self, record_id: str) -> list[tuple[str, str]]:
        rows = get_database().history(f"acme:Invoices:{record_id}")
        return [(row["stage"], row["event"]) for row in rows]


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch) -> Iterator[Run]:
    """Stages run in a task as a worker would run them, with Redis, the broker and the batch
    buffers replaced by what records their calls."""
    client = fakeredis.FakeRedis(decode_responses=True)
    effects = Run(client)

    def context(connection: str, attempt: int = 0, redelivered: bool = False) -> Any:
        history = RecordHistory(client, on_finish=finished)
        return Context(
            connection=SimpleNamespace(name=connection),
            attempt=attempt,
            redelivered=redelivered,
            batch=None,
            calls=True,
            history=history,
        )

    def apply_async(sig: Signature, args: tuple[Any, ...] = (), **options: Any) -> None:
        effects.sent.append((sig.task, tuple(args) or tuple(sig.args), {**sig.options, **options}))

    monkeypatch.setattr(Poison, "before", lambda self, task: None)  # no Redis to count in
    monkeypatch.setattr(StageTask, "context_for", lambda self, connection: context(connection))
    monkeypatch.setattr(stage_module, "build_context", context)
    monkeypatch.setattr(stage_module, "get_redis", lambda: client, raising=False)
    monkeypatch.setattr(
        stage_module,
        "enqueue",
        lambda kind, conn, els, resume: effects.parked.append((kind, conn, els, resume)),
    )
    monkeypatch.setattr(Signature, "apply_async", apply_async)
    yield effects


def _message(record_id: str) -> dict[str, Any]:
    job = SyncJob(
        connection="acme",
        module="Invoices",
        record_id=record_id,
        event="insert",
        event_id=f"e-{record_id}",
    )
    return StageMessage(job=job).model_dump(mode="json")


def _in_worker(task: Any, message: dict[str, Any], chain: list[dict[str, Any]]) -> Any:
    """The task run as a worker runs it (Celery's tracer, not `apply`, which drops the chain):
    its return value; what it sends next is in `Run.sent`."""
    task_id = uuid.uuid4().hex
    request = {"id": task_id, "root_id": task_id, "chain": chain, "delivery_info": {}}
    trace = build_tracer(task.name, task, app=app, eager=False, propagate=True)
    return trace(task_id, (message,), {}, request).retval


def _chain(*names: str) -> list[dict[str, Any]]:
    """A request's `chain` as Celery keeps it: the next step last."""
    return [dict(app.signature(name, options={"priority": 3})) for name in reversed(names)]


def test_the_next_stages_run_in_the_task_until_one_waits_on_a_batch(run: Run) -> None:
    """Before: the first stage's task ended and Celery sent the second (a broker hop, an ack,
    a task run each). Now the second runs here, and the third, which waits, is parked with the
    rest of its chain and the message the second gave it, as its own run would park it."""
    chain = _chain("zxsync.test_fused_second", "zxsync.test_fused_waits", "zxsync.after")
    assert _in_worker(first, _message("1"), chain) is None
    assert run.sent == []  # nothing crossed the broker
    [(kind, connection, elements, resume)] = run.parked
    assert (kind, connection, elements) == ("things", "acme", {"a": {"n": 1}})
    assert resume.task == "zxsync.test_fused_waits"
    given = resume.args[0]
    assert (given["xero_invoice_number"], given["xero_invoice_status"]) == ("INV-1", "AUTHORISED")
    assert [step["task"] for step in resume.options["chain"]] == ["zxsync.after"]
    assert resume.options["priority"] == 3 and resume.options["task_id"]
    assert run.history("1") == [
        ("zxsync.test_fused_first", "done"),
        ("zxsync.test_fused_second", "done"),
        ("zxsync.test_fused_waits", "batched"),
    ]


def test_the_chain_runs_here_to_its_end(run: Run) -> None:
    result = _in_worker(first, _message("2"), _chain("zxsync.test_fused_second"))
    assert run.sent == [] and run.parked == []
    assert result["xero_invoice_status"] == "AUTHORISED"


def test_a_stage_that_fails_here_is_sent_as_its_own_task_and_leaves_no_history(
    run: Run,
) -> None:
    """Its own run meets the error again, with the app's policies (retries, dead letter with
    the full payload); the rows its try logged are not written, or they would appear twice."""
    chain = _chain("zxsync.test_fused_fails", "zxsync.after")
    _in_worker(first, _message("3"), chain)
    [(task, args, options)] = run.sent
    assert task == "zxsync.test_fused_fails"
    assert args[0]["xero_invoice_number"] == "INV-1"  # the message the first stage gave it
    assert [step["task"] for step in options["chain"]] == ["zxsync.after"]
    assert run.history("3") == [("zxsync.test_fused_first", "done")]


def test_a_stage_on_a_queue_this_worker_does_not_consume_is_sent_to_its_worker(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(STAGE_QUEUES, "zxsync.test_fused_second", "zxs.invoices")
    consumed = {name: q for name, q in app.amqp.queues.items() if name != "zxs.invoices"}
    monkeypatch.setattr(app.amqp.queues, "_consume_from", consumed)
    _in_worker(first, _message("4"), _chain("zxsync.test_fused_second"))
    assert [task for task, _, _ in run.sent] == ["zxsync.test_fused_second"]


def test_with_fused_stages_off_every_stage_is_a_task_of_its_own(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "zxs_fused_stages", False)
    _in_worker(first, _message("5"), _chain("zxsync.test_fused_second"))
    assert [task for task, _, _ in run.sent] == ["zxsync.test_fused_second"]


def test_a_skipped_job_passes_the_rest_of_its_chain_here(run: Run) -> None:
    """A skip passed through every later stage as a task of its own: a hop each for nothing."""
    message = {**_message("6"), "skipped_reason": "a draft quote"}
    chain = _chain("zxsync.test_fused_second", "zxsync.test_fused_fails")
    result = _in_worker(first, message, chain)
    assert run.sent == [] and result["skipped_reason"] == "a draft quote"


def test_a_stage_the_flusher_finishes_that_fails_leaves_no_history(run: Run) -> None:
    """The flusher's try of a resumed stage that fails sends it as its task, which logs its
    rows again: the try's rows were written too (twice in the record's history)."""
    here = Chained(_message("7"), [], (None, None))
    assert CONTINUATIONS["zxsync.test_fused_fails"](here, {}, 0) is None
    assert run.history("7") == []


def test_a_soft_time_limit_in_a_stage_run_here_ends_the_task_run(run: Run) -> None:
    """The limit is the task's: its policies retry the run (a TimedOut), rather than the stage
    being sent as a task of its own while the task goes on past its limit."""
    with pytest.raises(SoftTimeLimitExceeded):
        RUN_HERE["zxsync.test_fused_out_of_time"](_message("8"), None, 0, False, True)


def test_a_stage_that_reads_an_api_runs_in_the_task_that_finished_the_one_before(
    run: Run,
) -> None:
    result = _in_worker(first, _message("9"), _chain("zxsync.test_fused_reads_zoho"))
    assert run.sent == [] and result["xero_contact_id"] == "read"


def test_the_flusher_runs_on_the_stages_that_need_no_call_and_leaves_the_first_that_does(
    run: Run,
) -> None:
    """A flusher that waited on one Zoho read per document would hold its buffer for all of
    them: the stage that reaches for an API is left to Celery, sent as its own task."""
    chain = _chain("zxsync.test_fused_second", "zxsync.test_fused_reads_zoho", "zxsync.after")
    here = Chained(_message("10"), chain, ("waiter-1", "root-1"))
    after = CONTINUATIONS["zxsync.test_fused_first"](here, {"kind": "things"}, 0)
    assert after is not None and after.message is not None
    assert after.message["xero_invoice_status"] == "AUTHORISED"  # the second ran here
    assert [step["task"] for step in after.chain] == [
        "zxsync.after",
        "zxsync.test_fused_reads_zoho",
    ]
    assert run.history("10") == [
        ("zxsync.test_fused_first", "done"),
        ("zxsync.test_fused_second", "done"),
    ]


def test_a_stage_the_flusher_runs_on_to_parks_with_the_rest_of_its_chain(run: Run) -> None:
    chain = _chain("zxsync.test_fused_waits", "zxsync.after")
    here = Chained(_message("11"), chain, ("waiter-2", "root-2"))
    after = CONTINUATIONS["zxsync.test_fused_first"](here, {"kind": "things"}, 0)
    assert after is not None and after.message is None and after.chain == []
    [(_, _, _, resume)] = run.parked
    assert resume.task == "zxsync.test_fused_waits"
    assert [step["task"] for step in resume.options["chain"]] == ["zxsync.after"]
    assert (resume.options["parent_id"], resume.options["root_id"]) == ("waiter-2", "root-2")


def test_a_context_without_calls_refuses_its_api_clients_before_any_call() -> None:
    settings = get_settings()
    connection = Connection.model_construct(name="acme", xero_tenant_id="t", zoho_org_id="o")
    ctx = StageContext(connection, settings, fakeredis.FakeRedis(), calls=False)
    for api in ("xero", "zoho"):
        with pytest.raises(CallsNotHere):
            getattr(ctx, api)


def test_the_door_runs_the_first_stages_of_a_job_it_admits(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The door sent the chain's first stage through the broker (a hop per job); it now runs
    the stages it can, and sends the first that fails, with the rest of the chain."""
    from tasks import ingest
    from workers import pipeline

    stages = ("zxsync.test_fused_first", "zxsync.test_fused_fails", "zxsync.after")
    monkeypatch.setattr(pipeline, "stages_of", lambda job, from_stage=None: stages)
    monkeypatch.setattr(pipeline, "tenant_priority", lambda connection: 2)
    message = StageMessage.model_validate(_message("12"))
    ingest._start_here(message)
    [(task, args, options)] = run.sent
    assert task == "zxsync.test_fused_fails" and args[0]["xero_invoice_number"] == "INV-1"
    assert [step["task"] for step in options["chain"]] == ["zxsync.after"]
    assert options["priority"] == 2
    assert run.history("12") == [("zxsync.test_fused_first", "done")]
