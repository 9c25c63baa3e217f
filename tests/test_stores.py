"""Dead letters, history and idempotency stores (fakeredis: fast and Lua-free paths only)."""

from __future__ import annotations

from decimal import Decimal

import fakeredis
import pytest

from schemas.errors import InvalidRecord
from schemas.history import HistoryEvent
from schemas.jobs import SyncJob
from schemas.links import INVOICE, ITEM, InvoiceLink, ItemLink
from workers.deadletter import DeadLetterStore
from workers.history import RecordHistory
from workers.idempotency import IdempotencyStore, idempotency_key

JOB = SyncJob(connection="c", module="Invoices", record_id="1", event="insert", event_id="e1")


def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(decode_responses=True)


def test_dead_letter_keeps_everything_until_discarded() -> None:
    store = DeadLetterStore(client())
    exc = InvalidRecord("Invoices 1", "Invoice_Date", "is empty", hint="Set it in Zoho.")
    letter = store.add(
        stage="zxsync.fetch_record",
        job=JOB.model_dump(mode="json"),
        exc=exc,
        attempts=1,
        payload='{"job": 1}',
        traceback="tb",
    )
    [listed] = store.list()
    assert listed == letter and store.get(letter.id) == letter
    assert (letter.error_kind, letter.field, letter.hint) == (
        "invalid_record",
        "Invoice_Date",
        "Set it in Zoho.",
    )
    assert store.discard(letter.id) and store.list() == []


def test_unexpected_exceptions_are_labelled_as_defects() -> None:
    letter = DeadLetterStore(client()).add(
        stage="s", job={}, exc=KeyError("x"), attempts=3, payload="{}", traceback=""
    )
    assert letter.error_kind == "bug" and "KeyError" in letter.error


def test_event_claimed_once_but_own_redelivery_proceeds() -> None:
    store = IdempotencyStore(client(), event_ttl_seconds=60)
    assert store.claim_event(JOB, "task-1")
    assert store.claim_event(JOB, "task-1"), "a redelivery of the claiming task must proceed"
    assert not store.claim_event(JOB, "task-2"), "a repeat of the event must not"


def test_links_round_trip() -> None:
    store = IdempotencyStore(client(), event_ttl_seconds=60)
    store.set_links(ITEM, "c", {"p1": ItemLink(Code="A"), "p2": ItemLink(Code="B")})
    assert store.links(ITEM, "c", ["p1", "p3"]) == {"p1": ItemLink(Code="A")}
    assert store.link(ITEM, "c", "p2") == ItemLink(Code="B") and store.link(ITEM, "x", "p2") is None


def test_a_link_stored_as_a_dict_before_reads_typed_and_is_stored_as_it_was() -> None:
    """Rows the dict-era code wrote (amounts as text, keys absent, a key this version does not
    know) read as the kind's model, with Decimal money, and are written back unchanged."""
    store = IdempotencyStore(client(), event_ttl_seconds=60)
    old = {
        "InvoiceID": "x1",
        "InvoiceNumber": "INV-1",
        "Status": "PAID",
        "Total": "11.50",
        "Reference": "",
        "version": "v1",
        "total_differs": {"zoho": "11.00", "xero": "11.50"},
        "credited": {"200|OUTPUT": ["5.00", "0.50"]},
        "credit_notes": [
            {
                "CreditNoteID": "c1",
                "CreditNoteNumber": "CN-1",
                "element": "Invoices:1@v1",
                "allocate": "5.50",
                "allocated": True,
                "text": "t",
            }
        ],
        "sent_by": "xero",
        "kept_by_a_newer_version": 1,
    }
    store.database.set_links("invoice", "c", {"Invoices:1": old})
    link = store.link(INVOICE, "c", "Invoices:1")
    assert link is not None and link.Total == Decimal("11.50")
    assert link.credit_notes[0].allocate == Decimal("5.50") and link.sent_by == "xero"
    assert link.total_differs is not None and link.total_differs.xero == "11.50"
    store.set_links(INVOICE, "c", {"Invoices:1": link})
    assert store.database.links("invoice", "c", ["Invoices:1"]) == {"Invoices:1": old}
    adopted = {"InvoiceID": "x2", "Total": "", "version": None}  # backfill's, Total unknown
    store.database.set_links("invoice", "c", {"Invoices:2": adopted})
    assert store.link(INVOICE, "c", "Invoices:2") == InvoiceLink(InvoiceID="x2")


def test_idempotency_key_is_stable_and_short() -> None:
    key = idempotency_key("invoice", "c", "Invoices", "1", "v1")
    assert key == idempotency_key("invoice", "c", "Invoices", "1", "v1")
    assert key != idempotency_key("invoice", "c", "Invoices", "1", "v2") and len(key) <= 128


def test_history_and_outcomes() -> None:
    history = RecordHistory(client())
    history.log("c:Invoices:1", "zxsync.fetch_record", HistoryEvent.DONE)
    history.finish("c", "c:Invoices:1", "created", "INV-0001")
    assert [e["event"] for e in history.entries("c:Invoices:1")] == ["done"]
    assert history.outcomes("c") == {"c:Invoices:1": ("created", "INV-0001")}


def test_history_takes_only_named_events_and_stores_their_names() -> None:
    """An event no reader knows (a typo in a writer) fails there, for mypy and at run time,
    and writes nothing; a named one is stored as the plain string old rows hold."""
    history = RecordHistory(client())
    with pytest.raises(ValueError, match="finished"):
        history.log("c:Invoices:1", "zxsync.fetch_record", "finished")  # type: ignore[arg-type]
    assert history.entries("c:Invoices:1") == []
    history.log("c:Invoices:1", "zxsync.fetch_record", HistoryEvent.DEAD_LETTER, error="x")
    [entry] = history.entries("c:Invoices:1")
    assert entry["event"] == "dead_letter" and type(entry["event"]) is str


def test_in_flight_jobs_stall_only_without_progress() -> None:
    history = RecordHistory(client())
    job = JOB.model_dump(mode="json")
    history.start("c", "c:Invoices:1", job)
    history.start("c", "c:Invoices:2", job)
    assert [k for k, _ in history.stalled("c", idle_seconds=0)] == ["c:Invoices:1", "c:Invoices:2"]
    assert history.stalled("c", idle_seconds=60) == []
    history.quiet_until("c:Invoices:2", until=4_000_000_000)  # parked for Xero's next day
    history.finish("c", "c:Invoices:1", "created")
    # after finishing: no revival
    history.log("c:Invoices:1", "zxsync.payment_feedback", HistoryEvent.DONE)
    assert history.stalled("c", idle_seconds=0) == []
