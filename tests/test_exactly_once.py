"""Issue #22: no document lost, forked or merged under Xero's failures.

Each test scripts the sandbox's answers (sandbox/faults.py `plan`) to reproduce one hole the
fault runs found, on the real pipeline."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis

import tasks.invoice_create  # noqa: F401  (registers the invoices kind)
from sandbox.faults import Planned
from sandbox.seed import build_dataset, load_dataset
from sandbox.xero_state import validation_error
from workers.batching import Buffer, Flush, LeaseLost
from workers.pipeline import submit_records

FAST_RETRIES = {"ZXS_MAX_RETRIES": "2", "ZXS_RETRY_BACKOFF_MAX": "0.5"}


def _wait_outcome(
    wait_for_outcomes: Callable[..., Any], conn: str, key: str, want: str, timeout: float = 60
) -> tuple[str, str]:
    """Poll one record until its outcome is `want` (an earlier run's outcome stays until then)."""
    deadline = time.monotonic() + timeout
    outcome, detail = "", ""
    while time.monotonic() < deadline:
        outcome, detail = wait_for_outcomes(conn, [key], timeout=timeout)[key]
        if outcome == want:
            break
        time.sleep(0.2)
    return outcome, detail


@pytest.mark.integration
def test_a_failed_lookup_of_a_saved_create_never_leads_to_a_second_create(
    make_stack: Callable[..., Any], wait_for_outcomes: Callable[..., Any]
) -> None:
    """PUT /Invoices saves both invoices but answers 500; every lookup then fails (a 400 on the
    filter) until the documents are dead-lettered; the next event of each record must find the
    invoice, not create it again. Each document's dead letter names its own record only."""
    stack = make_stack(extra_env=FAST_RETRIES)
    conn = stack.connections[0]
    data = load_dataset(
        stack.zoho, conn.zoho_org_id, build_dataset(invoices=2, accounts=1, products=2, seed=31)
    )
    ids = [str(inv["id"]) for inv in data.invoices]
    keys = [f"{conn.name}:Invoices:{rid}" for rid in ids]
    refused = validation_error("The filter could not be parsed.", [])
    stack.xero.faults.plan("PUT /Invoices", Planned(500, "An error occurred in Xero.", after=True))
    stack.xero.faults.plan("GET /Invoices", *[Planned(400, refused)] * 12)
    stack.start_worker(concurrency=2)
    submit_records(conn.name, ids, "first")
    outcomes = wait_for_outcomes(conn.name, keys, timeout=90)
    assert len(stack.xero.invoices(conn.xero_tenant_id)) == 2  # saved by the first PUT
    for record_id, key in zip(ids, keys, strict=True):
        outcome, detail = outcomes[key]
        assert outcome == "failed", (key, outcome, detail)
        assert record_id in detail and "look" in detail, detail
        other = next(r for r in ids if r != record_id)
        assert other not in detail, detail  # each element fails alone, with its own text
    with stack.xero.faults._lock:
        stack.xero.faults._plans.clear()  # Xero answers lookups again
    submit_records(conn.name, ids, "second", event="update")
    for key in keys:
        outcome, detail = _wait_outcome(wait_for_outcomes, conn.name, key, "created")
        assert outcome == "created", detail
    assert len(stack.xero.invoices(conn.xero_tenant_id)) == 2
    assert stack.xero.stats()["by_route"].get("PUT /Invoices", 0) == 1


@pytest.fixture
def invoice_buffer(redis_url: str) -> Buffer:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    return Buffer(client, "invoices", f"unit-{uuid.uuid4().hex[:8]}")


def _waiter(task_id: str) -> dict[str, Any]:
    return {"task": "t", "args": [{}], "kwargs": {}, "options": {"task_id": task_id}}


def test_the_mark_of_a_create_outlives_the_element_until_xero_answered(
    invoice_buffer: Buffer,
) -> None:
    """The element is resumed (dead-lettered) after its create failed: its next event's
    element is still a suspect, whatever path brings it back; an answer clears the mark."""
    buffer = invoice_buffer
    buffer.add({"a": {"v": 1}, "b": {"v": 1}}, _waiter("w1"))
    hold = Flush(buffer, buffer.fence())
    claimed = buffer.claim(10)
    assert not any(e.may_exist for e in claimed)
    hold.sending(claimed, "zxs-key")
    assert buffer.done({"a": 1, "b": 1}) == {"a", "b"}  # both documents went on (failed)
    buffer.add({"a": {"v": 2}, "b": {"v": 2}}, _waiter("w2"))  # a later event, attempt 0
    again = {e.id: e for e in buffer.claim(10)}
    assert again["a"].may_exist and again["b"].may_exist
    assert again["a"].sent is not None and again["a"].sent["key"] == "zxs-key"
    hold.store("invoice", {"a": {"InvoiceID": "x"}}, ["a"])  # Xero's answer for a is stored
    buffer.release(["a", "b"], suspect=False)
    marks = {e.id: e.sent for e in buffer.claim(10)}
    assert marks["a"] is None and marks["b"] is not None


def test_a_flusher_whose_lease_expired_writes_no_link_and_sends_no_create(
    invoice_buffer: Buffer,
) -> None:
    buffer = invoice_buffer
    buffer.add({"a": {}}, _waiter("w1"))
    stale = Flush(buffer, buffer.fence())
    [element] = buffer.claim(10)
    fresh = Flush(buffer, buffer.fence())  # the lease expired and another flusher took it
    with pytest.raises(LeaseLost):
        stale.store("invoice", {"a": {"InvoiceID": "x"}}, ["a"])
    with pytest.raises(LeaseLost):
        stale.sending([element], "k")
    links = f"zxs:links:{buffer.connection}:invoice"
    assert not buffer.redis.hexists(links, "a")
    fresh.store("invoice", {"a": {"InvoiceID": "y"}}, ["a"])
    assert json.loads(buffer.redis.hget(links, "a") or "{}") == {"InvoiceID": "y"}


# ------------------------------------------------------------------ URL length (issue #21.3)


@pytest.mark.integration
def test_the_largest_lookups_keep_every_url_under_xeros_limit(
    make_stack: Callable[..., Any], wait_for_outcomes: Callable[..., Any]
) -> None:
    """50 suspects with long references (their create saved, answered 500), then payment
    feedback's reads of 100 invoices, 100 contacts and their credit notes: Xero 404s URLs over
    2,000 characters, so none may be sent, and every invoice is found, none created twice."""
    from workers.context import build_context

    stack = make_stack(extra_env=FAST_RETRIES)
    conn = stack.connections[0]
    data = build_dataset(invoices=50, accounts=5, products=3, seed=32)
    for n, invoice in enumerate(data.invoices):
        invoice["Invoice_Number"] = f"ZINV-{n:03d}-" + "long-reference-" * 8
    data = load_dataset(stack.zoho, conn.zoho_org_id, data)
    ids = [str(inv["id"]) for inv in data.invoices]
    keys = [f"{conn.name}:Invoices:{rid}" for rid in ids]
    stack.xero.faults.plan("PUT /Invoices", Planned(500, "An error occurred in Xero.", after=True))
    stack.start_worker(concurrency=2)
    submit_records(conn.name, ids, "long")
    outcomes = wait_for_outcomes(conn.name, keys, timeout=120)
    assert {o for o, _ in outcomes.values()} == {"created"}, outcomes
    created = stack.xero.invoices(conn.xero_tenant_id)
    assert len(created) == 50
    stats = stack.xero.stats()
    assert stats["by_route"].get("PUT /Invoices", 0) == 1 + 0  # the saved one, none again
    assert stats["status"].get("404", 0) == 0, stats

    xero = build_context(conn.name).xero
    invoice_ids = [str(i["InvoiceID"]) for i in created] + [str(uuid.uuid4()) for _ in range(50)]
    assert xero.url_length("Invoices", {"IDs": ",".join(invoice_ids)}) > 2000
    assert {i.InvoiceID for i in xero.invoices({"IDs": ",".join(invoice_ids)})} == {
        str(i["InvoiceID"]) for i in created
    }
    contact_ids = [str(c["ContactID"]) for c in stack.xero.contacts(conn.xero_tenant_id)]
    contact_ids += [str(uuid.uuid4()) for _ in range(100 - len(contact_ids))]
    assert len(xero.contacts(contact_ids)) == 5
    clauses = [f'Contact.ContactID==guid("{c}")' for c in contact_ids]
    assert xero.credit_notes_any(clauses, 'Type=="ACCRECCREDIT"') == []
    assert stack.xero.stats()["status"].get("404", 0) == 0
