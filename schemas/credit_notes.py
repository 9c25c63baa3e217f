"""Credit notes for Zoho changes Xero will not apply to a paid or credited invoice (issue 18).

Xero refuses to edit or void an invoice with a payment or a credit allocated to it (FACTS). With
`paid_change: "credit_note"` the change is made with an ACCRECCREDIT credit note instead:

- a cancelled Zoho invoice: a credit note for all that is still invoiced (the total less our
  earlier credit notes); what is still owed is allocated to the invoice (it closes, the part
  that could have been voided), the paid part is left as customer credit, to refund or use;
- a Zoho invoice reduced: a credit note for the difference, allocated to the invoice up to what
  it still owes, the rest left as customer credit.

The credit note's lines are the difference per (account, tax type) between what Xero holds and
what it should hold, with Xero's own TaxAmount figures, so the tax is reversed to the cent. Each
plan is checked against Zoho's figures before anything is sent, and refused (an exception
report) when a credit note cannot express the change. Pure functions: unit-tested without I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field

from schemas.errors import InvalidRecord
from schemas.mapping import Line
from schemas.xero import (
    LineAmountTypes,
    XeroContactRef,
    XeroDate,
    XeroInvoice,
    XeroLineItemIn,
    XeroRequest,
)

ZERO = Decimal("0.00")
GroupKey = tuple[str, str]  # (AccountCode, TaxType)
Amounts = tuple[Decimal, Decimal]  # (LineAmount, TaxAmount)
PAID_HINT = (
    "Xero does not edit or void a paid or credited invoice: credit it in Xero by hand, or set "
    'the connection\'s paid_change to "credit_note".'
)


class XeroCreditNoteIn(XeroRequest):
    """An ACCRECCREDIT to create (PUT /CreditNotes)."""

    Type: Literal["ACCRECCREDIT"] = "ACCRECCREDIT"
    Contact: XeroContactRef
    LineItems: list[XeroLineItemIn] = Field(min_length=1)
    Date: XeroDate | None = None
    LineAmountTypes: LineAmountTypes = "Exclusive"
    Reference: str = Field(min_length=1, max_length=255)
    CurrencyCode: str | None = None
    Status: Literal["AUTHORISED"] = "AUTHORISED"


@dataclass(frozen=True)
class CreditPlan:
    """One credit note to raise: its lines per group, its total, and what goes to the invoice."""

    reason: Literal["cancelled", "reduced"]
    groups: dict[GroupKey, Amounts]
    total: Decimal
    allocate: Decimal  # to the invoice; the rest of `total` is left as customer credit

    @property
    def customer_credit(self) -> Decimal:
        return self.total - self.allocate


def group_key(account_code: str | None, tax_type: str | None) -> GroupKey:
    return (account_code or "", tax_type or "")


def xero_groups(invoice: XeroInvoice) -> dict[GroupKey, Amounts]:
    """What Xero holds on the invoice, per (account, tax type)."""
    groups: dict[GroupKey, Amounts] = {}
    for line in invoice.LineItems:
        key = group_key(line.AccountCode, line.TaxType)
        amount, tax = groups.get(key, (ZERO, ZERO))
        groups[key] = (amount + line.LineAmount, tax + line.TaxAmount)
    return groups


def mapped_groups(lines: list[Line]) -> dict[GroupKey, Amounts]:
    """What Xero would hold for the mapped Zoho lines, per (account, tax type)."""
    groups: dict[GroupKey, Amounts] = {}
    for line in lines:
        key = group_key(line.body.AccountCode, line.body.TaxType)
        amount, tax = groups.get(key, (ZERO, ZERO))
        groups[key] = (amount + line.line_amount, tax + line.tax)
    return groups


def encode_groups(groups: dict[GroupKey, Amounts]) -> dict[str, list[str]]:
    """For the invoice link (JSON): "account|tax" -> [amount, tax]."""
    return {f"{a}|{t}": [str(v[0]), str(v[1])] for (a, t), v in groups.items()}


def decode_groups(stored: dict[str, Any] | None) -> dict[GroupKey, Amounts]:
    out: dict[GroupKey, Amounts] = {}
    for key, (amount, tax) in (stored or {}).items():
        account, _, tax_type = str(key).partition("|")
        out[(account, tax_type)] = (Decimal(str(amount)), Decimal(str(tax)))
    return out


def add_groups(
    a: dict[GroupKey, Amounts], b: dict[GroupKey, Amounts], sign: int = 1
) -> dict[GroupKey, Amounts]:
    out = dict(a)
    for key, (amount, tax) in b.items():
        old = out.get(key, (ZERO, ZERO))
        out[key] = (old[0] + sign * amount, old[1] + sign * tax)
    return {k: v for k, v in out.items() if v != (ZERO, ZERO)}


def groups_total(groups: dict[GroupKey, Amounts], amount_types: str | None) -> Decimal:
    """A credit note's Total for these lines: tax-inclusive amounts already hold the tax."""
    if amount_types == "Inclusive":
        return sum((v[0] for v in groups.values()), ZERO)
    return sum((v[0] + v[1] for v in groups.values()), ZERO)


def _check_credited(record: str, invoice: XeroInvoice, ours: set[str]) -> None:
    """Only our own credit notes may be allocated to the invoice: a credit (or overpayment,
    prepayment) applied by hand in Xero is not ours to net, so a person decides."""
    applied = sum((c.AppliedAmount for c in invoice.CreditNotes if c.CreditNoteID in ours), ZERO)
    if invoice.AmountCredited != applied:
        raise InvalidRecord(
            record,
            "Grand_Total",
            f"Xero invoice {invoice.InvoiceNumber} has {invoice.AmountCredited} credited, "
            f"{applied} of it by this integration's credit notes (the rest was credited by hand)",
            hint="Credit the change in Xero by hand.",
        )


def plan_cancel(
    record: str, invoice: XeroInvoice, credited: dict[GroupKey, Amounts], ours: set[str]
) -> CreditPlan | None:
    """The credit note that cancels what is still invoiced (the total less our earlier credit
    notes, `credited` per group); None when nothing is left."""
    _check_credited(record, invoice, ours)
    groups = add_groups(xero_groups(invoice), credited, -1)
    total = groups_total(groups, invoice.LineAmountTypes)
    expected = invoice.Total - groups_total(credited, invoice.LineAmountTypes)
    if total != expected:
        raise InvalidRecord(
            record,
            "Grand_Total",
            f"the credit note's lines total {total}, but Xero invoice {invoice.InvoiceNumber} "
            f"still invoices {expected}",
        )
    if total == ZERO:
        return None
    due = invoice.AmountDue if invoice.AmountDue is not None else ZERO
    return CreditPlan("cancelled", groups, total, min(due, total))


def plan_reduction(
    record: str,
    invoice: XeroInvoice,
    lines: list[Line],
    zoho_total: Decimal,
    credited: dict[GroupKey, Amounts],
    ours: set[str],
) -> CreditPlan | None:
    """The credit note for a Zoho reduction of a paid or credited invoice; None when the Zoho
    figures already match (`credited`: our earlier credit notes per group). An increase, or
    lines that rose while others fell, is refused."""
    _check_credited(record, invoice, ours)
    held = invoice.Total - groups_total(credited, invoice.LineAmountTypes)
    if zoho_total == held:
        return None
    if zoho_total > held:
        raise InvalidRecord(
            record,
            "Grand_Total",
            f"rose to {zoho_total} after Xero invoice {invoice.InvoiceNumber} was paid or "
            f"credited (it holds {held}); a credit note cannot raise an invoice",
            hint="Invoice the difference separately in Xero.",
        )
    now = add_groups(xero_groups(invoice), credited, -1)
    diff = add_groups(now, mapped_groups(lines), -1)
    risen = sorted(f"{a or '-'}/{t or '-'}" for (a, t), v in diff.items() if v[0] < 0 or v[1] < 0)
    if risen:
        raise InvalidRecord(
            record,
            "Grand_Total",
            f"lines of account/tax {', '.join(risen)} rose while the total fell; a credit note "
            f"can only take amounts off",
            hint="Credit or invoice the change in Xero by hand.",
        )
    total = groups_total(diff, invoice.LineAmountTypes)
    if total != held - zoho_total:
        raise InvalidRecord(
            record,
            "Grand_Total",
            f"a credit note of {total} would not bring Xero's {held} to Zoho's {zoho_total}",
        )
    due = invoice.AmountDue if invoice.AmountDue is not None else ZERO
    return CreditPlan("reduced", diff, total, min(due, total))


def credit_reference(invoice_number: str | None, element_id: str) -> str:
    """Unique per change: the lookup before a late create finds exactly this credit note."""
    return f"Credit {invoice_number or ''} {element_id}".strip()[:255]


def credit_note_body(
    plan: CreditPlan, invoice: XeroInvoice, contact_id: str, reference: str, on: date
) -> XeroCreditNoteIn:
    """The ACCRECCREDIT: one line per group, Xero's TaxAmount sent so the tax is exact."""
    what = "Cancelled" if plan.reason == "cancelled" else "Reduced"
    lines = [
        XeroLineItemIn(
            Description=f"{what} in Zoho: invoice {invoice.InvoiceNumber}",
            Quantity=Decimal(1),
            UnitAmount=amount,
            AccountCode=account or None,
            TaxType=tax_type or None,
            TaxAmount=tax,
        )
        for (account, tax_type), (amount, tax) in sorted(plan.groups.items())
    ]
    amount_types = invoice.LineAmountTypes or "Exclusive"
    assert amount_types in ("Exclusive", "Inclusive", "NoTax")
    return XeroCreditNoteIn(
        Contact=XeroContactRef(ContactID=contact_id),
        LineItems=lines,
        Date=on,
        LineAmountTypes=amount_types,
        Reference=reference,
        CurrencyCode=invoice.CurrencyCode,
    )


def describe(plan: CreditPlan, note_number: str, invoice_number: str | None) -> str:
    """What the Zoho record is told (Xero_Credit_Note)."""
    what = "Cancelled" if plan.reason == "cancelled" else "Reduced"
    parts = [f"{what} after payment: credit note {note_number} for {plan.total}"]
    if plan.allocate > 0:
        parts.append(f"{plan.allocate} allocated to invoice {invoice_number}")
    if plan.customer_credit > 0:
        parts.append(f"{plan.customer_credit} left as customer credit (to refund or use)")
    return "; ".join(parts)
