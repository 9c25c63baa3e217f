"""The Xero sandbox's payment side: credit notes and allocations, contact Balances,
If-Modified-Since on invoices, and signed webhooks on every invoice change."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from test_xero_sandbox import AU, Sandbox, data, make  # noqa: F401

from sandbox.server import ThreadedServer

pytestmark = pytest.mark.integration  # the sandbox served over HTTP, a server per test

D = Decimal
KEY = "sandbox-webhook-key"


def invoice(sb: Sandbox, due: date, amount: str = "100") -> Any:
    body = {
        "Type": "ACCREC",
        "Contact": {"Name": "Payer Pty"},
        "Status": "AUTHORISED",
        "Date": (due - timedelta(days=30)).isoformat(),
        "DueDate": due.isoformat(),
        "LineAmountTypes": "NoTax",
        "LineItems": [
            {"Description": "x", "Quantity": 1, "UnitAmount": amount, "AccountCode": "200"}
        ],
    }
    return data(sb.call("PUT", "/Invoices", {"Invoices": [body]}))["Invoices"][0]


def test_credit_note_allocation_pays_the_invoice_and_balances_follow(
    make: Callable[..., Sandbox],  # noqa: F811
) -> None:
    sb = make()
    today = date.today()
    late = invoice(sb, today - timedelta(days=3))
    invoice(sb, today + timedelta(days=30), "50")  # not due yet: outstanding, not overdue
    contact_id = late["Contact"]["ContactID"]
    balances = data(sb.call("GET", f"/Contacts/{contact_id}"))["Contacts"][0]["Balances"]
    assert balances["AccountsReceivable"] == {"Outstanding": D("150.00"), "Overdue": D("100.00")}

    note = {
        "Type": "ACCRECCREDIT",
        "Contact": {"ContactID": contact_id},
        "Status": "AUTHORISED",
        "LineAmountTypes": "NoTax",
        "LineItems": [
            {"Description": "refund", "Quantity": 1, "UnitAmount": "120", "AccountCode": "200"}
        ],
    }
    created = data(sb.call("PUT", "/CreditNotes", {"CreditNotes": [note]}))["CreditNotes"][0]
    assert (created["CreditNoteNumber"], created["RemainingCredit"]) == ("CN-0001", D("120.00"))
    path = f"/CreditNotes/{created['CreditNoteID']}/Allocations"
    on = today.isoformat()
    too_much = sb.call(
        "PUT",
        path,
        {
            "Allocations": [
                {"Amount": "101", "Invoice": {"InvoiceID": late["InvoiceID"]}, "Date": on}
            ]
        },
    )
    assert too_much.status_code == 400
    undated = sb.call(
        "PUT",
        path,
        {"Allocations": [{"Amount": "100", "Invoice": {"InvoiceID": late["InvoiceID"]}}]},
    )
    assert undated.status_code == 400 and "Date" in undated.text  # the spec requires it
    ok = sb.call(
        "PUT",
        path,
        {
            "Allocations": [
                {"Amount": "100", "Invoice": {"InvoiceID": late["InvoiceID"]}, "Date": on}
            ]
        },
    )
    assert ok.status_code == 200, ok.text
    paid = data(sb.call("GET", f"/Invoices/{late['InvoiceID']}"))["Invoices"][0]
    assert (paid["Status"], paid["AmountCredited"], paid["AmountDue"]) == (
        "PAID",
        D("100.00"),
        D("0.00"),
    )
    assert "FullyPaidOnDate" in paid
    left = data(sb.call("GET", f"/CreditNotes/{created['CreditNoteID']}"))["CreditNotes"][0]
    assert left["RemainingCredit"] == D("20.00")
    listed = data(sb.call("GET", "/Contacts", IDs=contact_id))["Contacts"][0]["Balances"]
    assert listed["AccountsReceivable"] == {"Outstanding": D("50.00"), "Overdue": D("0.00")}


def test_if_modified_since_returns_only_invoices_changed_since(
    make: Callable[..., Sandbox],  # noqa: F811
) -> None:
    sb = make()
    first = invoice(sb, date.today())
    time.sleep(1.1)  # If-Modified-Since is accurate to the second
    since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    second = invoice(sb, date.today())
    sb.xs.add_payment(AU, first["InvoiceID"], D("10"))
    changed = data(sb.call("GET", "/Invoices", headers={"If-Modified-Since": since}, page="1"))
    assert {i["InvoiceID"] for i in changed["Invoices"]} == {
        first["InvoiceID"],
        second["InvoiceID"],
    }
    # the paid one by id: both changed within the same second, where Xero orders by ID
    paid = next(i for i in changed["Invoices"] if i["InvoiceID"] == first["InvoiceID"])
    assert [p["Amount"] for p in paid["Payments"]] == [D("10.00")]


def test_every_invoice_change_is_a_signed_webhook_and_intent_to_receive_is_checked(
    make: Callable[..., Sandbox],  # noqa: F811
) -> None:
    received: list[dict[str, Any]] = []

    async def receiver(request: Request) -> Response:
        body = await request.body()
        expected = base64.b64encode(hmac.new(KEY.encode(), body, hashlib.sha256).digest())
        if request.headers.get("x-xero-signature", "").encode() != expected:
            return Response(status_code=401)
        received.append(json.loads(body))
        return Response(status_code=200)

    server = ThreadedServer(Starlette(routes=[Route("/", receiver, methods=["POST"])])).start()
    try:
        sb = make()
        sb.xs.webhooks.subscribe(AU, f"{server.url}/", KEY)
        assert sb.xs.webhooks.intent_to_receive(AU)
        received.clear()
        created = invoice(sb, date.today())
        sb.xs.add_payment(AU, created["InvoiceID"], D("100"))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and sum(len(r["events"]) for r in received) < 3:
            time.sleep(0.02)
        events = [e for r in received for e in r["events"]]
        invoices = [e for e in events if e["eventCategory"] == "INVOICE"]
        assert [e["eventType"] for e in invoices] == ["CREATE", "UPDATE"]
        assert {e["resourceId"] for e in invoices} == {created["InvoiceID"]}
        assert all(e["tenantId"] == AU and e["tenantType"] == "ORGANISATION" for e in events)
        assert all(
            {"firstEventSequence", "lastEventSequence", "entropy"} <= r.keys() for r in received
        )
        sequences = [(r["firstEventSequence"], r["lastEventSequence"]) for r in received]
        assert sequences == sorted(sequences)
    finally:
        sb.xs.webhooks.close()
        server.stop()


def test_overpayments_prepayments_and_refunds_follow_xeros_rules(
    make: Callable[..., Sandbox],  # noqa: F811
) -> None:
    """Issue 18.2: what moves a customer's credit without an invoice, as strict as Xero."""
    import pytest

    sb = make()
    contact_id = invoice(sb, date.today())["Contact"]["ContactID"]
    over = sb.xs.add_prepaid(AU, "Overpayments", contact_id, D("20"))
    sb.xs.add_prepaid(AU, "Prepayments", contact_id, D("15"))
    where = f'Contact.ContactID==guid("{contact_id}") AND Status=="AUTHORISED"'
    listed = data(sb.call("GET", "/Overpayments", where=where))["Overpayments"]
    assert [(o["Type"], o["RemainingCredit"]) for o in listed] == [
        ("RECEIVE-OVERPAYMENT", D("20.00"))
    ]
    with pytest.raises(ValueError, match="<= 20"):
        sb.xs.refund(AU, "Overpayments", over["OverpaymentID"], D("20.01"))
    sb.xs.refund(AU, "Overpayments", over["OverpaymentID"], D("20"))
    assert data(sb.call("GET", "/Overpayments", where=where))["Overpayments"] == []  # PAID
    with pytest.raises(ValueError, match="AUTHORISED"):
        sb.xs.refund(AU, "Overpayments", over["OverpaymentID"], D("1"))
    prepaid = data(sb.call("GET", "/Prepayments", where=where))["Prepayments"]
    assert prepaid[0]["RemainingCredit"] == D("15.00")
    assert sb.call("GET", "/Prepayments", References="x").status_code == 400  # not its filter
