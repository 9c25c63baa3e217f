"""Payment feedback, Xero -> Zoho: the job the relay enqueues and the pure decisions.

What Xero says about an invoice (status, payments, credits) and its contact (balances, credit)
becomes Zoho custom fields (README "Payment feedback"). Everything here is a pure function of
Xero's answers, so the rules are unit-tested without Redis or HTTP.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.xero import XeroBalances, XeroInvoice

PaymentStatus = Literal["Unpaid", "Partially paid", "Paid", "Voided"]
FEEDBACK_TASK = "zxsync.payment_feedback"
MAX_INVOICES_PER_JOB = 100  # one Xero page, one Zoho update call


class PaymentFeedbackJob(BaseModel):
    """Xero invoices (and credit notes: CREDITNOTE webhooks) of one connection whose payment
    state should be told to Zoho."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    connection: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    invoice_ids: list[str] = Field(default_factory=list, max_length=MAX_INVOICES_PER_JOB)
    credit_note_ids: list[str] = Field(default_factory=list, max_length=MAX_INVOICES_PER_JOB)
    event_id: str = Field(min_length=1, max_length=128)

    @model_validator(mode="after")
    def _something(self) -> PaymentFeedbackJob:
        if not self.invoice_ids and not self.credit_note_ids:
            raise ValueError("invoice_ids or credit_note_ids must name at least one document")
        return self


def payment_status(invoice: XeroInvoice) -> PaymentStatus:
    """Zoho's Xero_Payment_Status: a credit note counts as paid, as it does in Xero."""
    if invoice.Status in ("VOIDED", "DELETED"):
        return "Voided"
    if invoice.Status == "PAID":
        return "Paid"
    if invoice.AmountPaid + invoice.AmountCredited > 0:
        return "Partially paid"
    return "Unpaid"


def invoice_fields(invoice: XeroInvoice) -> dict[str, Any]:
    """The Zoho invoice's payment fields (API names); the last payment is the latest dated."""
    dated = [(p.Date, p) for p in invoice.Payments if p.Date is not None]
    last = max(dated, key=lambda pair: pair[0], default=None)
    return {
        "Xero_Payment_Status": payment_status(invoice),
        "Xero_Amount_Paid": invoice.AmountPaid,
        "Xero_Amount_Due": invoice.AmountDue if invoice.AmountDue is not None else invoice.Total,
        "Xero_Last_Payment_Date": last[0].date().isoformat() if last else None,
        "Xero_Last_Payment_Amount": last[1].Amount if last else None,
    }


def account_fields(
    balances: XeroBalances, credit: Decimal | None, hold_over: Decimal | None
) -> dict[str, Any]:
    """The Zoho account's balance fields; the credit hold only when a threshold is set, the
    credit balance only when it could be read (an unknown credit is not written as 0)."""
    receivable = balances.AccountsReceivable
    fields: dict[str, Any] = {
        "Xero_Outstanding_Balance": receivable.Outstanding,
        "Xero_Overdue_Balance": receivable.Overdue,
    }
    if credit is not None:
        fields["Xero_Credit_Balance"] = credit
    if hold_over is not None:
        fields["Xero_Credit_Hold"] = receivable.Overdue > hold_over
    return fields


def changed_fields(new: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    """Only what differs from what was last written (Decimals compare by value)."""
    old = old or {}
    return {k: v for k, v in new.items() if k not in old or old[k] != v}
