"""Credit notes (ACCRECCREDIT): created with sales lines, allocated to an invoice of the
same contact and currency."""

from __future__ import annotations

import copy
import uuid
from decimal import Decimal

from sandbox.xero.common import (
    JSON,
    MSG_CURRENCY,
    Outcome,
    Tenant,
    ValidationFailed,
    _day_fields,
    _number,
    _utc,
    money,
    parse_day,
)
from sandbox.xero.documents import _amount_type, _totals
from sandbox.xero.invoices import MSG_STATUS, InvoicesState


class CreditNotesState(InvoicesState):
    """Credit notes and their allocations."""

    def apply_credit_note(
        self, tenant_id: str, invoice_id: str, amount: Decimal, credit: Decimal | None = None
    ) -> JSON:
        """Raise an AUTHORISED ACCRECCREDIT of `credit` (default `amount`, tax-free) for the
        invoice's contact and allocate `amount` of it to the invoice (Xero's UI does both)."""
        with self.lock:
            t = self.tenant(tenant_id)
            invoice = t.invoices[invoice_id]
            note, errors = self.save_credit_note(
                tenant_id,
                {
                    "Type": "ACCRECCREDIT",
                    "Status": "AUTHORISED",
                    "Contact": {"ContactID": invoice["Contact"]["ContactID"]},
                    "CurrencyCode": invoice["CurrencyCode"],
                    "LineAmountTypes": "NoTax",
                    "LineItems": [
                        {
                            "Description": "Credit",
                            "Quantity": 1,
                            "UnitAmount": credit or amount,
                            "AccountCode": "200",
                        }
                    ],
                },
                unitdp=2,
            )
            if note is None:
                raise ValidationFailed(errors)
            allocation, errors = self.allocate_credit_note(
                t,
                note,
                {
                    "Amount": amount,
                    "Invoice": {"InvoiceID": invoice_id},
                    "Date": _utc(self.clock()).date().isoformat(),
                },
            )
            if allocation is None:
                raise ValidationFailed(errors)
            return copy.deepcopy(note)

    def find_credit_note(self, t: Tenant, ref: str) -> JSON | None:
        """By CreditNoteID, else by CreditNoteNumber."""
        found = t.credit_notes.get(ref.lower()) or t.credit_notes.get(ref)
        return found or next(
            (c for c in t.credit_notes.values() if c.get("CreditNoteNumber") == ref), None
        )

    def save_credit_note(self, tenant_id: str, submitted: JSON, *, unitdp: int) -> Outcome:
        """Create (PUT) one ACCRECCREDIT; its lines follow the sales rules of an ACCREC."""
        t = self.tenant(tenant_id)
        errors: list[str] = []
        if submitted.get("Type") != "ACCRECCREDIT":
            errors.append("Credit note Type must be ACCRECCREDIT (ACCPAYCREDIT is not modelled).")
        status = str(submitted.get("Status") or "DRAFT").upper()
        if status not in ("DRAFT", "SUBMITTED", "AUTHORISED"):
            errors.append(MSG_STATUS)
        contact, new_contact, contact_errors = self._invoice_contact(t, submitted, {})
        errors += contact_errors
        issued = parse_day(submitted.get("Date")) or _utc(self.clock()).date()
        amount_type = _amount_type(submitted.get("LineAmountTypes"), errors)
        currency = str(submitted.get("CurrencyCode") or t.base_currency).upper()
        if currency not in t.currencies:
            errors.append(MSG_CURRENCY.format(code=currency))
        lines = self._lines(t, submitted, {}, "ACCREC", amount_type, status, unitdp, errors)
        if errors:
            return None, errors
        if new_contact is not None:
            contact, problems = self.save_contact(tenant_id, new_contact, create_only=True)
            if contact is None:
                return None, problems
        assert contact is not None
        sub_total, total_tax, _ = _totals(lines, amount_type)
        t.credit_note_counter += 1
        note: JSON = {
            "Type": "ACCRECCREDIT",
            "CreditNoteID": str(uuid.uuid4()),
            "CreditNoteNumber": f"CN-{t.credit_note_counter:04d}",
            "Reference": str(submitted.get("Reference") or ""),
            "Contact": {"ContactID": contact["ContactID"], "Name": contact["Name"]},
            **_day_fields("Date", issued),
            "Status": status,
            "LineAmountTypes": amount_type,
            "LineItems": lines,
            "SubTotal": sub_total,
            "TotalTax": total_tax,
            "Total": sub_total + total_tax,
            "RemainingCredit": sub_total + total_tax,
            "CurrencyCode": currency,
            "CurrencyRate": Decimal("1.000000"),
            "Allocations": [],
            "HasErrors": False,
        }
        self._touch(t, note, "CreditNoteID", self.clock())
        t.credit_notes[note["CreditNoteID"]] = note
        return note, []

    def allocate_credit_note(self, t: Tenant, note: JSON, submitted: JSON) -> Outcome:
        """Allocate part of an AUTHORISED credit note to an AUTHORISED invoice of its contact."""
        ref = submitted.get("Invoice")
        invoice_id = ref.get("InvoiceID", "") if isinstance(ref, dict) else ""
        invoice = t.invoices.get(str(invoice_id).lower())
        try:
            amount = money(_number(submitted.get("Amount")))
        except ValueError:
            return None, ["Amount must be a number."]
        on = parse_day(submitted.get("Date"))
        if on is None:  # the spec's Allocation requires Amount, Invoice and Date
            return None, ["An allocation must have a Date."]
        if note["Status"] != "AUTHORISED":
            return None, ["Only AUTHORISED credit notes can be allocated."]
        if invoice is None or invoice["Type"] != "ACCREC":
            return None, ["Invoice could not be found."]
        if invoice["Contact"]["ContactID"] != note["Contact"]["ContactID"]:
            return None, ["The invoice must be for the same contact as the credit note."]
        if invoice["CurrencyCode"] != note["CurrencyCode"]:
            return None, ["The invoice must be in the same currency as the credit note."]
        if invoice["Status"] != "AUTHORISED":
            return None, [MSG_STATUS]
        if not 0 < amount <= min(note["RemainingCredit"], invoice["AmountDue"]):
            return None, [
                f"The allocation amount must be more than 0 and at most the credit remaining "
                f"({note['RemainingCredit']}) and the amount due ({invoice['AmountDue']})."
            ]
        allocation: JSON = {
            "AllocationID": str(uuid.uuid4()),
            "Amount": amount,
            **_day_fields("Date", on),
            "Invoice": {
                "InvoiceID": invoice["InvoiceID"],
                "InvoiceNumber": invoice["InvoiceNumber"],
            },
        }
        note["Allocations"].append(allocation)
        note["RemainingCredit"] = money(note["RemainingCredit"] - amount)
        if note["RemainingCredit"] == 0:
            note["Status"] = "PAID"
        invoice["CreditNotes"].append(
            {
                "CreditNoteID": note["CreditNoteID"],
                "CreditNoteNumber": note["CreditNoteNumber"],
                "Total": note["Total"],
                "AppliedAmount": amount,
                **_day_fields("Date", on),
            }
        )
        self._settle(t, invoice, "AmountCredited", amount, on)
        self._touch(t, note, "CreditNoteID", self.clock())
        return allocation, []
