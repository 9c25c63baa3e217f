"""Credit notes for Zoho changes to a paid or credited invoice: the pure plans (issue 18)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D
from typing import Any

import pytest

from schemas.credit_notes import (
    credit_note_body,
    credit_reference,
    decode_groups,
    describe,
    encode_groups,
    plan_cancel,
    plan_reduction,
)
from schemas.errors import InvalidRecord
from schemas.mapping import Line
from schemas.xero import XeroInvoice, XeroLineItemIn

REC = "Invoices 42"
OURS = {"cn-ours"}


def invoice(paid: str, credited: str = "0", **extra: Any) -> XeroInvoice:
    """Two GST lines (100 + 10 tax, 50 + 5 tax) and one untaxed freight line of 20: 185."""
    lines = [
        {"AccountCode": "200", "TaxType": "OUTPUT", "LineAmount": "100.00", "TaxAmount": "10.00"},
        {"AccountCode": "200", "TaxType": "OUTPUT", "LineAmount": "50.00", "TaxAmount": "5.00"},
        {"AccountCode": "260", "TaxType": "NONE", "LineAmount": "20.00", "TaxAmount": "0.00"},
    ]
    total = D("185.00")
    applied = [{"CreditNoteID": "cn-ours", "AppliedAmount": credited}] if D(credited) else []
    return XeroInvoice.model_validate(
        {
            "CreditNotes": applied,
            "InvoiceID": "inv-1",
            "InvoiceNumber": "INV-0007",
            "Type": "ACCREC",
            "Status": "PAID" if D(paid) + D(credited) == total else "AUTHORISED",
            "Total": total,
            "AmountPaid": paid,
            "AmountCredited": credited,
            "AmountDue": total - D(paid) - D(credited),
            "LineAmountTypes": "Exclusive",
            "CurrencyCode": "AUD",
            "LineItems": lines,
            **extra,
        }
    )


def mapped_line(account: str, tax_type: str, amount: str, tax: str) -> Line:
    body = XeroLineItemIn(
        Description="x", Quantity=D(1), UnitAmount=D(amount), AccountCode=account, TaxType=tax_type
    )
    return Line(body, D(amount), D(tax), tax_type != "NONE")


def test_cancel_of_a_part_paid_invoice_credits_all_closes_the_rest_and_leaves_paid_as_credit() -> (
    None
):
    plan = plan_cancel(REC, invoice(paid="60.00"), {}, OURS)
    assert plan is not None
    assert plan.total == D("185.00")  # tax reversed exactly: 165 + 15 + 0 ... per group
    assert plan.groups[("200", "OUTPUT")] == (D("150.00"), D("15.00"))
    assert plan.allocate == D("125.00") and plan.customer_credit == D("60.00")
    text = describe(plan, "CN-0001", "INV-0007")
    assert "CN-0001 for 185.00" in text and "125.00 allocated" in text and "60.00 left" in text


def test_cancel_of_a_fully_paid_invoice_is_all_customer_credit() -> None:
    plan = plan_cancel(REC, invoice(paid="185.00"), {}, OURS)
    assert plan is not None and plan.allocate == D("0.00") and plan.customer_credit == D("185.00")


def test_cancel_nets_our_earlier_credit_notes_and_refuses_credits_made_by_hand() -> None:
    earlier = {("200", "OUTPUT"): (D("50.00"), D("5.00"))}
    plan = plan_cancel(REC, invoice(paid="100.00", credited="55.00"), earlier, OURS)
    assert plan is not None and plan.total == D("130.00") and plan.allocate == D("30.00")
    with pytest.raises(InvalidRecord, match="by hand"):
        plan_cancel(REC, invoice(paid="100.00", credited="55.00"), earlier, set())
    # all credited already (a second cancel event): nothing more to do
    done = {("200", "OUTPUT"): (D("150.00"), D("15.00")), ("260", "NONE"): (D("20.00"), D(0))}
    assert plan_cancel(REC, invoice(paid="0", credited="185.00"), done, OURS) is None


def test_reduction_credits_the_difference_per_account_and_tax_allocating_what_is_owed() -> None:
    # the 50 line is dropped in Zoho: Zoho's total 130, Xero's 185, 100 paid
    lines = [
        mapped_line("200", "OUTPUT", "100.00", "10.00"),
        mapped_line("260", "NONE", "20.00", "0.00"),
    ]
    plan = plan_reduction(REC, invoice(paid="100.00"), lines, D("130.00"), {}, OURS)
    assert plan is not None
    assert plan.groups == {("200", "OUTPUT"): (D("50.00"), D("5.00"))}
    assert plan.total == D("55.00") and plan.allocate == D("55.00")
    # paid in full: all of it is customer credit
    paid = plan_reduction(REC, invoice(paid="185.00"), lines, D("130.00"), {}, OURS)
    assert paid is not None and paid.allocate == D("0.00") and paid.customer_credit == D("55.00")
    # owed less than the credit: the owed part is allocated, the rest is customer credit
    part = plan_reduction(REC, invoice(paid="160.00"), lines, D("130.00"), {}, OURS)
    assert part is not None and part.allocate == D("25.00") and part.customer_credit == D("30.00")


def test_reduction_is_checked_against_zohos_figures() -> None:
    lines = [
        mapped_line("200", "OUTPUT", "100.00", "10.00"),
        mapped_line("260", "NONE", "20.00", "0.00"),
    ]
    with pytest.raises(InvalidRecord, match="would not bring"):
        plan_reduction(REC, invoice(paid="100.00"), lines, D("129.00"), {}, OURS)
    with pytest.raises(InvalidRecord, match="cannot raise"):
        plan_reduction(REC, invoice(paid="100.00"), lines, D("190.00"), {}, OURS)
    risen = [
        mapped_line("200", "OUTPUT", "100.00", "10.00"),
        mapped_line("260", "NONE", "30.00", "0.00"),
    ]
    with pytest.raises(InvalidRecord, match="rose while the total fell"):
        plan_reduction(REC, invoice(paid="100.00"), risen, D("140.00"), {}, OURS)
    unchanged = [*lines, mapped_line("200", "OUTPUT", "50.00", "5.00")]
    assert plan_reduction(REC, invoice(paid="100.00"), unchanged, D("185.00"), {}, OURS) is None


def test_body_sends_xeros_tax_figures_and_a_unique_reference() -> None:
    plan = plan_cancel(REC, invoice(paid="60.00"), {}, OURS)
    assert plan is not None
    ref = credit_reference("INV-0007", "Invoices:42@cancel")
    body = credit_note_body(plan, invoice(paid="60.00"), "c-1", ref, date(2026, 12, 1)).body()
    assert body["Type"] == "ACCRECCREDIT" and body["Reference"] == ref
    assert [(li["AccountCode"], li["UnitAmount"], li["TaxAmount"]) for li in body["LineItems"]] == [
        ("200", D("150.00"), D("15.00")),
        ("260", D("20.00"), D("0.00")),
    ]
    assert decode_groups(encode_groups(plan.groups)) == plan.groups
