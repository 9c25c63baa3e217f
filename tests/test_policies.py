"""The task policies (workers/policies), each in-process on a throwaway Celery app with the
app's task base, then what the app's own tasks get: the defects issue 15.1 names (payment
feedback dead-lettered a transient error at once, the report task had its own backoff, no task
had a time limit) and that every registered task runs the policies."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from billiard.einfo import ExceptionInfo
from celery import Celery
from celery.canvas import Signature
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from schemas.errors import PoisonMessage, RateLimited, ServerError, ValidationFailed
from workers.deadletter import DeadLetter, DeadLetterStore
from workers.history import RecordHistory, record_key
from workers.policies import POLICIES, PolicyTask
from workers.policies.poison import deliveries_key
from workers.policies.time_limit import GRACE_SECONDS, SOFT_SECONDS, TimedOut
from workers.redis import get_redis
from workers.settings import get_settings
from workers.store import Database, use_database

TENANT = "9f1c3a52-8a0e-4c1b-9d55-2f0a7e1b9c11"
policy_app = Celery("policy-tests", task_cls="workers.policies:PolicyTask", set_as_current=False)
attempts: list[int] = []


@pytest.fixture
def connection(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> Iterator[str]:
    """A connection of its own, the session's Redis and a fresh database for the policies."""
    name = f"pol-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv(
        "ZXS_CONNECTIONS",
        json.dumps([{"name": name, "xero_tenant_id": TENANT, "zoho_org_id": "org"}]),
    )
    get_settings.cache_clear()
    get_redis.cache_clear()
    use_database(Database("sqlite://"))
    attempts.clear()
    yield name
    use_database(None)
    get_settings.cache_clear()
    get_redis.cache_clear()


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """What the policies send (reports, rescheduled runs): recorded, no broker."""
    sends: list[tuple[str, Any]] = []

    def send_task(self: Celery, name: str, args: Any = None, **options: Any) -> None:
        sends.append((name, args))

    def apply_async(sig: Signature, args: Any = None, **options: Any) -> None:
        sends.append((sig.task, {**sig.options, **options}))

    monkeypatch.setattr(Celery, "send_task", send_task)
    monkeypatch.setattr(Signature, "apply_async", apply_async)
    return sends


def message(connection: str, record_id: str = "101") -> dict[str, Any]:
    job = {
        "connection": connection,
        "module": "Invoices",
        "record_id": record_id,
        "event": "insert",
        "event_id": uuid.uuid4().hex,
    }
    return {"job": job}


def letters(connection: str) -> list[DeadLetter]:
    return [d for d in DeadLetterStore(get_redis()).list(10_000) if d.connection == connection]


def events(connection: str, record_id: str = "101") -> list[dict[str, Any]]:
    return RecordHistory(get_redis()).entries(record_key(connection, "Invoices", record_id))


def raising(exc: Exception, times: int | None = None) -> Any:
    """A task body that raises `exc` (the first `times` attempts, else always)."""

    calls: list[int] = []

    def body(task: Any, msg: dict[str, Any]) -> str:
        attempts.append(task.request.retries)
        calls.append(task.request.retries)
        if times is None or len(calls) <= times:
            raise exc
        return "done"

    return body


def task(body: Any, **options: Any) -> Any:
    name = f"t.{uuid.uuid4().hex[:8]}"
    return policy_app.task(bind=True, name=name, shared=False, **options)(body)


# -- retry


def test_a_transient_error_is_retried_until_it_passes(
    connection: str, sent: list[tuple[str, Any]]
) -> None:
    flaky = task(raising(ServerError("Xero", "HTTP 503"), times=2), max_retries=3)
    assert flaky.apply(args=[message(connection)]).get() == "done"
    assert attempts == [0, 1, 2] and letters(connection) == [] and sent == []
    retries = [e for e in events(connection) if e["event"] == "retry"]
    assert len(retries) == 2 and "HTTP 503" in retries[0]["error"]


def test_retries_end_in_a_dead_letter_and_a_permanent_error_is_not_retried(
    connection: str, sent: list[tuple[str, Any]]
) -> None:
    broken = task(raising(ServerError("Xero", "HTTP 503")), max_retries=2)
    assert broken.apply(args=[message(connection, "1")]).failed()
    assert attempts == [0, 1, 2]
    [letter] = letters(connection)
    assert (letter.error_kind, letter.attempts) == ("server_error", 3)
    attempts.clear()
    refused = task(raising(ValidationFailed("Xero", ["Account code '9' is not valid"])))
    assert refused.apply(args=[message(connection, "2")]).failed() and attempts == [0]
    off = task(raising(ServerError("Xero", "HTTP 503")), max_retries=0)
    attempts.clear()
    assert off.apply(args=[message(connection, "3")]).failed() and attempts == [0]


def test_backoff_is_capped_per_task_and_a_rate_limit_waits_its_retry_after(
    connection: str, sent: list[tuple[str, Any]]
) -> None:
    capped = task(raising(ServerError("Xero", "HTTP 503")), max_retries=6, backoff_max=2)
    capped.apply(args=[message(connection, "1")])
    waits = [e["countdown"] for e in events(connection, "1") if e["event"] == "retry"]
    assert len(waits) == 6 and all(0 <= w <= 2 for w in waits)
    limited = task(raising(RateLimited("Xero", "minute", 7.0), times=1), defer_rate_limited=False)
    assert limited.apply(args=[message(connection, "2")]).get() == "done"
    [retry] = [e for e in events(connection, "2") if e["event"] == "retry"]
    assert retry["countdown"] == 7.0


# -- rate-limit deferral


def test_a_rate_limit_reschedules_the_run_without_spending_an_attempt(
    connection: str, sent: list[tuple[str, Any]]
) -> None:
    limited = task(raising(RateLimited("Xero", "minute", 3.0)))
    result = limited.apply(args=[message(connection)])
    assert result.state == "IGNORED" and attempts == [0] and letters(connection) == []
    [(name, options)] = sent
    assert name == limited.name and options["countdown"] == 3.0 and options["retries"] == 0
    assert [e["event"] for e in events(connection)] == ["throttled"]


# -- poison


def test_a_run_delivered_past_its_budget_is_dead_lettered_before_its_body(
    connection: str, sent: list[tuple[str, Any]]
) -> None:
    crashing = task(raising(ServerError("Xero", "HTTP 503")), max_deliveries=2)
    get_redis().set(deliveries_key("crash-1", 0), 2)  # two deliveries died with their worker
    assert crashing.apply(args=[message(connection)], task_id="crash-1").failed()
    assert attempts == []
    [letter] = letters(connection)
    assert letter.error_kind == "poison" and "delivered 3 times" in letter.error


# -- dead letter and history


def test_a_failed_job_is_dead_lettered_with_its_payload_reported_and_ends_failed(
    connection: str, sent: list[tuple[str, Any]]
) -> None:
    key = record_key(connection, "Invoices", "101")
    get_redis().zadd(f"zxs:admitted:{connection}", {key: 1.0})  # the record holds a slot
    msg = message(connection)
    task(raising(ValidationFailed("Xero", ["Invoice # must be unique."]))).apply(args=[msg])
    [letter] = letters(connection)
    assert json.loads(letter.payload) == msg and letter.record_id == "101"
    assert sent == [("zxsync.report_dead_letter", [letter.id])]
    dead = [e for e in events(connection) if e["event"] == "dead_letter"]
    assert dead and dead[0]["dead_letter"] == letter.id
    assert RecordHistory(get_redis()).outcomes(connection)[key][0] == "failed"
    assert get_redis().zscore(f"zxs:admitted:{connection}", key) is None  # slot freed


def test_a_task_with_dead_letters_off_fails_alone(
    connection: str, sent: list[tuple[str, Any]]
) -> None:
    quiet = task(raising(ValidationFailed("Xero", ["nope"])), dead_letter=False)
    assert quiet.apply(args=[message(connection)]).failed()
    assert letters(connection) == [] and sent == [] and events(connection) == []


# -- time limits


def test_time_limits_default_and_follow_each_other() -> None:
    plain = task(raising(ServerError("Xero", "x")))
    assert (plain.soft_time_limit, plain.time_limit) == (SOFT_SECONDS, SOFT_SECONDS + GRACE_SECONDS)
    hard = task(raising(ServerError("Xero", "x")), time_limit=100)
    assert (hard.soft_time_limit, hard.time_limit) == (100 - GRACE_SECONDS, 100)
    soft = task(raising(ServerError("Xero", "x")), soft_time_limit=10)
    assert (soft.soft_time_limit, soft.time_limit) == (10, 10 + GRACE_SECONDS)


def test_a_soft_time_limit_is_retried_and_a_hard_one_dead_letters(
    connection: str, sent: list[tuple[str, Any]]
) -> None:
    slow = task(raising(SoftTimeLimitExceeded(), times=1))
    assert slow.apply(args=[message(connection, "1")]).get() == "done" and attempts == [0, 1]
    [retry] = [e for e in events(connection, "1") if e["event"] == "retry"]
    assert "ran past its time limit" in retry["error"]
    stuck = task(raising(SoftTimeLimitExceeded()), max_retries=0)
    result = stuck.apply(args=[message(connection, "2")])
    assert isinstance(result.result, TimedOut)
    # past the hard limit the pool kills the process and Celery calls on_failure (in the
    # worker's main process: no request of the run there)
    try:
        raise TimeLimitExceeded(330)
    except TimeLimitExceeded as exc:
        einfo = ExceptionInfo()
        stuck.on_failure(exc, "killed-1", (message(connection, "3"),), {}, einfo)
    kinds = {d.record_id: d.error_kind for d in letters(connection)}
    assert kinds == {"2": "timeout", "3": "bug"}


def test_celery_calls_on_failure_when_the_pool_kills_a_task_past_its_hard_limit(
    connection: str, sent: list[tuple[str, Any]]
) -> None:
    """The dead letter of a hard time limit rests on Celery calling the task's on_failure from
    the worker's main process (celery PR #10226, in 5.7): an older Celery acks the job with no
    hook, and this test fails."""
    from celery.contrib.testing.mocks import TaskMessage
    from celery.worker.request import Request

    stuck = task(raising(ServerError("Xero", "x")))
    msg = message(connection, "4")
    request = Request(TaskMessage(stuck.name, id="hard-1", args=[msg]), app=policy_app, task=stuck)
    request.on_timeout(soft=False, timeout=stuck.time_limit)
    [letter] = letters(connection)
    assert letter.record_id == "4" and "TimeLimitExceeded" in letter.error


# -- the app's tasks


def app_tasks() -> dict[str, Any]:
    from workers.app import app

    app.loader.import_default_modules()
    # the product's tasks (zxsync.*), not what a test registers for itself (zxsync.test_, or on
    # a test's own app, which Celery shares with every app)
    return {
        name: t
        for name, t in app.tasks.items()
        if name.startswith("zxsync.") and not name.startswith("zxsync.test_")
    }


def test_every_registered_task_runs_the_policies_within_time_limits() -> None:
    from workers.app import app

    visibility = app.conf.broker_transport_options["visibility_timeout"]
    tasks = app_tasks()
    assert len(tasks) >= 20
    for name, registered in tasks.items():
        assert isinstance(registered, PolicyTask), name
        assert registered.policies == POLICIES, name
        assert type(registered).__call__ is PolicyTask.__call__, f"{name} skips the policies"
        # under the visibility timeout whatever ZXS_RETRY_BACKOFF_MAX is (it is 600 s and more)
        assert registered.soft_time_limit < registered.time_limit < min(visibility, 600), name


def test_every_task_that_dead_letters_says_what_failed() -> None:
    from workers.alerts import WHAT_FAILED

    for name, registered in app_tasks().items():
        if registered.dead_letter:
            assert WHAT_FAILED.get(name), f"{name}'s exception report has no title"


def test_payment_feedback_retries_a_transient_error_instead_of_dead_lettering(
    connection: str, sent: list[tuple[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: a Xero 5xx (or a timeout, a busy lock) dead-lettered the job at once."""
    import tasks.payment_feedback as feedback

    calls: list[int] = []

    def feed_back_job(ctx: Any, job: Any) -> Any:
        calls.append(ctx.attempt)
        if len(calls) <= 2:
            raise ServerError("Xero", "HTTP 503")
        return feedback.Fed(3, [], [])

    monkeypatch.setattr(feedback, "feed_back_job", feed_back_job)
    job = {"connection": connection, "invoice_ids": ["i-1"], "event_id": "e-1"}
    assert feedback.payment_feedback.apply(args=[job]).get() == 3
    assert calls == [0, 1, 2] and letters(connection) == []


def test_contact_sync_retries_a_transient_error_instead_of_dead_lettering(
    connection: str, sent: list[tuple[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import tasks.contact_sync as contact_sync

    calls: list[int] = []

    def sync_contacts(ctx: Any, contact_ids: list[str]) -> int:
        calls.append(ctx.attempt)
        if len(calls) == 1:
            raise ServerError("Xero", "HTTP 502")
        return 1

    monkeypatch.setattr(contact_sync, "sync_contacts", sync_contacts)
    job = {"connection": connection, "contact_ids": ["c-1"], "event_id": "e-1"}
    assert contact_sync.contact_sync.apply(args=[job]).get() == 1
    assert calls == [0, 1] and letters(connection) == []


def test_payment_feedback_counts_its_deliveries(
    connection: str, sent: list[tuple[str, Any]]
) -> None:
    """Before: only the stages and the door (by hand) counted deliveries."""
    from tasks.payment_feedback import payment_feedback

    budget = get_settings().zxs_max_deliveries
    get_redis().set(deliveries_key("feedback-1", 0), budget)
    job = {"connection": connection, "invoice_ids": ["i-1"], "event_id": "e-1"}
    assert payment_feedback.apply(args=[job], task_id="feedback-1").failed()
    [letter] = letters(connection)
    assert letter.error_kind == "poison" and letter.stage == "zxsync.payment_feedback"


def test_the_report_task_backs_off_through_the_retry_policy_and_is_never_dead_lettered(
    connection: str, sent: list[tuple[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import workers.alerts as alerts
    import workers.policies.retry as retry

    letter = DeadLetterStore(get_redis()).add(
        stage="zxsync.invoice_create",
        job=message(connection)["job"],
        exc=ValidationFailed("Xero", ["nope"]),
        attempts=1,
        payload="{}",
        traceback="",
    )
    waits: list[tuple[int, float]] = []
    countdown = retry.retry_countdown

    def spy(exc: BaseException, retries: int, backoff_max: float) -> float:
        waits.append((retries, backoff_max))
        return countdown(exc, retries, backoff_max)

    def deliver(report: Any, channel: str, settings: Any) -> None:
        raise OSError("webhook down")

    monkeypatch.setattr(retry, "retry_countdown", spy)
    monkeypatch.setattr(alerts, "channels", lambda settings, letter: ["webhook"])
    monkeypatch.setattr(alerts, "deliver", deliver)
    result = alerts.report_dead_letter.apply(args=[letter.id])
    assert isinstance(result.result, alerts.Undelivered)
    assert waits == [(n, alerts.REPORT_BACKOFF_MAX_SECONDS) for n in range(5)]
    attempts_kept = DeadLetterStore(get_redis()).deliveries(letter.id)["webhook"]
    assert (
        attempts_kept.attempt == 6
        and not attempts_kept.ok
        and "webhook down" in attempts_kept.error
    )
    assert [d.id for d in letters(connection)] == [letter.id]  # no letter about the report


def test_a_redelivered_door_job_past_its_budget_is_poison(
    connection: str, sent: list[tuple[str, Any]]
) -> None:
    from tasks.ingest import ingest

    get_redis().set(deliveries_key("door-1", 0), get_settings().zxs_max_deliveries)
    result = ingest.apply(args=[message(connection)["job"]], task_id="door-1")
    assert isinstance(result.result, PoisonMessage)


# -- stage contracts (issue 15.5)


@pytest.mark.parametrize(
    ("stage", "module", "missing"),
    [
        ("tasks.invoice_create:invoice_create", "Invoices", ["document", "xero_contact_id"]),
        ("tasks.contact_precheck:contact_precheck", "Invoices", ["document"]),
        ("tasks.item_precheck:item_precheck", "Invoices", ["document"]),
        ("tasks.vendor_precheck:vendor_precheck", "Purchase_Orders", ["purchase_order"]),
        (
            "tasks.purchase_order_create:purchase_order_create",
            "Purchase_Orders",
            ["xero_contact_id", "purchase_order"],
        ),
    ],
)
def test_a_stage_given_less_than_earlier_stages_guarantee_dead_letters_a_contract_error(
    connection: str, sent: list[tuple[str, Any]], stage: str, module: str, missing: list[str]
) -> None:
    """Before: an AssertionError ("prechecks run first"), reported as a defect with no field.
    Now the stage's input type names what the earlier stages guarantee, and the letter says
    which field is missing and keeps the whole message."""
    import importlib

    path, name = stage.split(":")
    msg = message(connection)
    msg["job"]["module"] = module
    getattr(importlib.import_module(path), name).apply(args=[msg])
    [letter] = letters(connection)
    assert (letter.error_kind, letter.field) == ("contract", missing[0]), letter
    assert all(f"{field}: Field required" in letter.error for field in missing)
    assert json.loads(letter.payload) == msg


def test_a_cancel_needs_no_document_and_a_skipped_message_passes_through(
    connection: str, sent: list[tuple[str, Any]]
) -> None:
    """The narrowing keeps what a message without a document may do: a cancel (the record
    is gone from Zoho) passes the prechecks, a skipped job passes every stage."""
    from tasks.contact_precheck import contact_precheck
    from tasks.item_precheck import item_precheck

    cancel = {**message(connection), "intent": "cancel"}
    assert contact_precheck.apply(args=[cancel]).get()["intent"] == "cancel"
    assert item_precheck.apply(args=[cancel]).get()["intent"] == "cancel"
    skipped = {**message(connection), "skipped_reason": "not synced"}
    assert contact_precheck.apply(args=[skipped]).get() == skipped
    assert letters(connection) == []


def test_a_synced_sale_missing_its_contact_names_the_field(
    connection: str, sent: list[tuple[str, Any]]
) -> None:
    from schemas.jobs import ContactedSale
    from schemas.zoho import ZohoSalesDocument

    document = ZohoSalesDocument.model_validate(
        {
            "id": "101",
            "Subject": "s",
            "Account_Name": {"id": "a1", "name": "A"},
            "Invoiced_Items": [{"Product_Name": {"id": "p1"}, "Quantity": "1", "List_Price": "5"}],
            "Sub_Total": "5",
            "Grand_Total": "5",
        }
    )
    msg = {**message(connection), "document": document.model_dump(mode="json")}
    with pytest.raises(Exception, match="xero_contact_id"):
        ContactedSale.model_validate(msg)
    assert ContactedSale.model_validate({**msg, "xero_contact_id": "c1"}).document == document
