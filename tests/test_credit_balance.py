"""Xero -> Zoho after the invoice (issue 18.2): credit notes, overpayments, prepayments and
refunds move the Zoho account's Xero_Credit_Balance, through webhooks or the reconcile net;
a credit note allocated to an invoice moves its amount due and payment status."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from test_payment_feedback import OPTIONS, seed, sync, wait_zoho

pytestmark = pytest.mark.integration


def _contact(stack: Any, xero_id: str) -> str:
    tenant = stack.connections[0].xero_tenant_id
    invoice = next(i for i in stack.xero.invoices(tenant) if i["InvoiceID"] == xero_id)
    return str(invoice["Contact"]["ContactID"])


def test_overpayments_prepayments_and_refunds_reach_the_credit_balance_by_reconciliation(
    make_stack: Callable[..., Any], wait_for_outcomes: Callable[..., Any]
) -> None:
    from tasks.payment_feedback import RECONCILE_TASK
    from workers.app import app

    stack = make_stack(OPTIONS, extra_env={"ZXS_CREDIT_RECONCILE_SECONDS": "0.5"})
    conn = stack.connections[0]
    tenant = conn.xero_tenant_id
    stack.start_relay()
    stack.start_worker(concurrency=2)
    account, [record] = seed(stack, [date.today() + timedelta(days=30)])
    xero_id = sync(stack, [record], wait_for_outcomes)[record]
    wait_zoho(stack, "Accounts", account, {"Xero_Credit_Balance": 0})
    contact = _contact(stack, xero_id)
    app.send_task(RECONCILE_TASK, args=[conn.name])  # sets the marks
    time.sleep(1.5)

    stack.xero.webhooks.pause(tenant)  # only the reconcile net can see what follows
    with stack.xero.lock:
        note, errors = stack.xero.save_credit_note(
            tenant,
            {
                "Type": "ACCRECCREDIT",
                "Status": "AUTHORISED",
                "Contact": {"ContactID": contact},
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
    over = stack.xero.add_prepaid(tenant, "Overpayments", contact, Decimal("20"))
    stack.xero.add_prepaid(tenant, "Prepayments", contact, Decimal("15"))
    app.send_task(RECONCILE_TASK, args=[conn.name])
    wait_zoho(stack, "Accounts", account, {"Xero_Credit_Balance": Decimal("65")})

    time.sleep(1.1)  # If-Modified-Since is accurate to the second
    stack.xero.refund(tenant, "CreditNotes", note["CreditNoteID"], Decimal("10"))
    stack.xero.refund(tenant, "Overpayments", over["OverpaymentID"], Decimal("20"))
    app.send_task(RECONCILE_TASK, args=[conn.name])
    wait_zoho(stack, "Accounts", account, {"Xero_Credit_Balance": Decimal("35")})


def test_a_credit_note_allocated_in_xero_moves_the_invoice_and_the_credit_balance(
    make_stack: Callable[..., Any], wait_for_outcomes: Callable[..., Any]
) -> None:
    """Through the CREDITNOTE webhook; the figure for the report: seconds from the credit
    note in Xero to the Zoho field."""
    stack = make_stack(OPTIONS)
    tenant = stack.connections[0].xero_tenant_id
    stack.start_relay()
    stack.start_worker(concurrency=2)
    account, [record] = seed(stack, [date.today() + timedelta(days=30)])
    xero_id = sync(stack, [record], wait_for_outcomes)[record]
    wait_zoho(stack, "Invoices", record, {"Xero_Payment_Status": "Unpaid"})
    stack.xero.apply_credit_note(tenant, xero_id, Decimal("40"), credit=Decimal("55"))
    started = time.monotonic()
    wait_zoho(
        stack,
        "Invoices",
        record,
        {"Xero_Payment_Status": "Partially paid", "Xero_Amount_Due": Decimal("60")},
    )
    wait_zoho(stack, "Accounts", account, {"Xero_Credit_Balance": Decimal("15")})
    print(f"credit note to Zoho field: {time.monotonic() - started:.2f}s")
