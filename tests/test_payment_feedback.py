"""Payment feedback end to end: the Xero sandbox sends signed webhooks to the relay, workers
write to the Zoho sandbox. Assertions read the sandboxes' own state.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from relay.signatures import xero_signature
from sandbox.xero_webhooks import XeroWebhooks
from workers import keys

pytestmark = pytest.mark.integration

KEY = "xero-webhook-key-for-tests-0123456789"
OPTIONS = {
    "xero_webhook_key": KEY,
    "zoho_webhook_token": "zoho-token-for-tests",
    "credit_hold_overdue": "50",
}
INVOICE_FIELDS = (
    "Xero_Payment_Status",
    "Xero_Amount_Paid",
    "Xero_Amount_Due",
    "Xero_Last_Payment_Amount",
    "Xero_Last_Payment_Date",
)
ACCOUNT_FIELDS = (
    "Xero_Outstanding_Balance",
    "Xero_Overdue_Balance",
    "Xero_Credit_Balance",
    "Xero_Credit_Hold",
)


def seed(stack: Any, due_dates: list[date]) -> tuple[str, list[str]]:
    """One Zoho account with one untaxed 100.00 invoice per due date; (account id, invoice ids)."""
    org = stack.connections[0].zoho_org_id
    account = stack.zoho.insert(org, "Accounts", {"Account_Name": "Payer Pty"})
    product = stack.zoho.insert(
        org,
        "Products",
        {"Product_Name": "Widget", "Product_Code": "WID-1", "Unit_Price": Decimal("100")},
    )
    ids = []
    for n, due in enumerate(due_dates):
        invoice = stack.zoho.insert(
            org,
            "Invoices",
            {
                "Subject": f"pay {n}",
                "Invoice_Number": f"ZINV-PAY-{n}",
                "Currency": "AUD",
                "Account_Name": {"id": account["id"], "name": "Payer Pty"},
                "Invoice_Date": (due - timedelta(days=30)).isoformat(),
                "Due_Date": due.isoformat(),
                "Invoiced_Items": [
                    {
                        "Product_Name": {"id": product["id"], "name": "Widget"},
                        "Quantity": Decimal("1"),
                        "List_Price": Decimal("100.00"),
                    }
                ],
            },
        )
        ids.append(str(invoice["id"]))
    return str(account["id"]), ids


def sync(stack: Any, ids: list[str], wait_for_outcomes: Callable[..., Any]) -> dict[str, str]:
    """Run the Zoho -> Xero pipeline for `ids`; Zoho record id -> Xero InvoiceID."""
    from workers.app import app

    conn = stack.connections[0].name
    for record_id in ids:
        job = {
            "connection": conn,
            "module": "Invoices",
            "record_id": record_id,
            "event": "insert",
            "event_id": f"pay-{record_id}",
        }
        app.send_task("zxsync.ingest", args=[job])
    wait_for_outcomes(conn, [f"{conn}:Invoices:{rid}" for rid in ids], timeout=120)
    org = stack.connections[0].zoho_org_id
    return {rid: stack.zoho.get(org, "Invoices", rid)["Xero_Invoice_ID"] for rid in ids}


def wait_zoho(
    stack: Any,
    module: str,
    record_id: str,
    expected: dict[str, Any],
    seen: list[str] | None = None,
    timeout: float = 90.0,
) -> float:
    """Poll the Zoho record until it holds `expected`; seconds waited. `seen` collects each
    Xero_Payment_Status observed, to check the order of states."""
    org = stack.connections[0].zoho_org_id
    start = time.monotonic()
    while True:
        record = stack.zoho.get(org, module, record_id)
        status = record.get("Xero_Payment_Status")
        if seen is not None and status and (not seen or seen[-1] != status):
            seen.append(status)
        got = {k: record.get(k) for k in expected}
        if got == expected:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{module} {record_id}: {got} != {expected}")
        time.sleep(0.02)


def test_partial_then_full_payment_then_credit_note_reach_zoho_in_order(
    make_stack: Callable[..., Any], wait_for_outcomes: Callable[..., Any]
) -> None:
    stack = make_stack(OPTIONS)
    tenant = stack.connections[0].xero_tenant_id
    stack.start_relay()
    stack.start_worker(concurrency=2)
    today = date.today()
    account, (overdue, current) = seed(stack, [today - timedelta(days=5), today + timedelta(30)])
    xero_ids = sync(stack, [overdue, current], wait_for_outcomes)

    seen: list[str] = []
    unpaid = {"Xero_Payment_Status": "Unpaid", "Xero_Amount_Paid": 0, "Xero_Amount_Due": 100}
    wait_zoho(stack, "Invoices", overdue, unpaid, seen)
    wait_zoho(
        stack,
        "Accounts",
        account,
        {"Xero_Outstanding_Balance": 200, "Xero_Overdue_Balance": 100, "Xero_Credit_Hold": True},
    )

    latencies = []
    stack.xero.add_payment(tenant, xero_ids[overdue], Decimal("40"), today - timedelta(days=1))
    partly = {
        "Xero_Payment_Status": "Partially paid",
        "Xero_Amount_Paid": 40,
        "Xero_Amount_Due": 60,
        "Xero_Last_Payment_Amount": 40,
        "Xero_Last_Payment_Date": (today - timedelta(days=1)).isoformat(),
    }
    latencies.append(wait_zoho(stack, "Invoices", overdue, partly, seen))
    wait_zoho(stack, "Accounts", account, {"Xero_Overdue_Balance": 60, "Xero_Credit_Hold": True})

    stack.xero.add_payment(tenant, xero_ids[overdue], Decimal("60"), today)
    paid = {
        "Xero_Payment_Status": "Paid",
        "Xero_Amount_Paid": 100,
        "Xero_Amount_Due": 0,
        "Xero_Last_Payment_Amount": 60,
        "Xero_Last_Payment_Date": today.isoformat(),
    }
    latencies.append(wait_zoho(stack, "Invoices", overdue, paid, seen))
    wait_zoho(
        stack,
        "Accounts",
        account,
        {"Xero_Outstanding_Balance": 100, "Xero_Overdue_Balance": 0, "Xero_Credit_Hold": False},
    )

    stack.xero.apply_credit_note(tenant, xero_ids[current], Decimal("100"), Decimal("150"))
    credited = {"Xero_Payment_Status": "Paid", "Xero_Amount_Paid": 0, "Xero_Amount_Due": 0}
    latencies.append(wait_zoho(stack, "Invoices", current, credited))
    wait_zoho(
        stack,
        "Accounts",
        account,
        {"Xero_Outstanding_Balance": 0, "Xero_Credit_Balance": 50, "Xero_Credit_Hold": False},
    )
    assert seen == ["Unpaid", "Partially paid", "Paid"]
    assert all(d.status == 200 for d in stack.xero.webhooks.deliveries)
    print(f"webhook-to-Zoho latency: {[round(s, 3) for s in latencies]} s")


def test_forged_webhook_is_refused_and_enqueues_nothing_and_intent_to_receive_passes(
    make_stack: Callable[..., Any],
) -> None:
    from workers.redis import get_redis

    stack = make_stack(OPTIONS)  # no worker: whatever is enqueued stays in the queue
    url = stack.start_relay()
    tenant = stack.connections[0].xero_tenant_id
    assert stack.xero.webhooks.intent_to_receive(tenant)
    body = json.dumps(
        {
            "events": [
                {
                    "resourceUrl": "https://api.xero.com/api.xro/2.0/Invoices/forged",
                    "resourceId": "0f0f0f0f-0000-4000-8000-000000000001",
                    "eventDateUtc": "2026-11-25T10:00:00.000",
                    "eventType": "UPDATE",
                    "eventCategory": "INVOICE",
                    "tenantId": tenant,
                    "tenantType": "ORGANISATION",
                }
            ],
            "firstEventSequence": 1,
            "lastEventSequence": 1,
            "entropy": "FORGEDFORGEDFORGED",
        }
    ).encode()
    queue, payments = get_redis(), keys.broker_prefix() + "zxs.payments"
    for signature in (xero_signature(body, "guessed-key"), "", xero_signature(body + b" ", KEY)):
        answer = httpx.post(
            f"{url}/webhooks/xero", content=body, headers={"x-xero-signature": signature}
        )
        assert answer.status_code == 401, answer.text
    assert queue.llen(payments) == 0
    good = {"x-xero-signature": xero_signature(body, KEY)}
    signed = httpx.post(f"{url}/webhooks/xero", content=body, headers=good)
    assert signed.status_code == 200 and signed.content == b""
    assert queue.llen(payments) == 1

    wrong = XeroWebhooks()
    wrong.subscribe(tenant, f"{url}/webhooks/xero", "not-the-configured-key")
    assert not wrong.intent_to_receive(tenant)
    wrong.close()


def test_a_dropped_webhook_is_caught_by_reconciliation(
    make_stack: Callable[..., Any], wait_for_outcomes: Callable[..., Any]
) -> None:
    from workers.app import app

    stack = make_stack(OPTIONS)
    conn = stack.connections[0]
    stack.start_relay()
    stack.start_worker(concurrency=2)
    _, [record_id] = seed(stack, [date.today() + timedelta(days=10)])
    xero_id = sync(stack, [record_id], wait_for_outcomes)[record_id]
    wait_zoho(stack, "Invoices", record_id, {"Xero_Payment_Status": "Unpaid"})

    stack.xero.webhooks.pause(conn.xero_tenant_id)  # the relay was down: events are lost
    stack.xero.add_payment(conn.xero_tenant_id, xero_id, Decimal("100"))
    time.sleep(1.5)
    org = conn.zoho_org_id
    assert stack.zoho.get(org, "Invoices", record_id)["Xero_Payment_Status"] == "Unpaid"

    app.send_task("zxsync.payment_reconcile")  # what beat sends: fans out per connection
    wait_zoho(stack, "Invoices", record_id, {"Xero_Payment_Status": "Paid", "Xero_Amount_Due": 0})


def test_an_unallocated_credit_note_reaches_the_zoho_account_through_its_webhook(
    make_stack: Callable[..., Any], wait_for_outcomes: Callable[..., Any]
) -> None:
    """Only a CREDITNOTE event tells of it (no invoice changes): before, the relay ignored it."""
    stack = make_stack(OPTIONS)
    tenant = stack.connections[0].xero_tenant_id
    stack.start_relay()
    stack.start_worker(concurrency=2)
    account, [record] = seed(stack, [date.today() + timedelta(days=30)])
    xero_id = sync(stack, [record], wait_for_outcomes)[record]
    wait_zoho(stack, "Accounts", account, {"Xero_Credit_Balance": 0})
    contact = stack.xero.invoices(tenant)
    contact_id = next(i for i in contact if i["InvoiceID"] == xero_id)["Contact"]["ContactID"]
    with stack.xero.lock:
        note, errors = stack.xero.save_credit_note(
            tenant,
            {
                "Type": "ACCRECCREDIT",
                "Status": "AUTHORISED",
                "Contact": {"ContactID": contact_id},
                "CurrencyCode": "AUD",
                "LineAmountTypes": "NoTax",
                "LineItems": [
                    {
                        "Description": "Goodwill",
                        "Quantity": 1,
                        "UnitAmount": 30,
                        "AccountCode": "200",
                    }
                ],
            },
            unitdp=2,
        )
    assert note is not None, errors
    wait_zoho(stack, "Accounts", account, {"Xero_Credit_Balance": 30})
    assert all(d.status == 200 for d in stack.xero.webhooks.deliveries)
