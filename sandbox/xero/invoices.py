"""Invoices (ACCREC and ACCPAY): unique ACCREC numbers, the status rules of an update,
totals, and what a payment or credit does to the amount due."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

from sandbox.xero.common import (
    JSON,
    MSG_CURRENCY,
    Outcome,
    Tenant,
    _day_fields,
    _utc,
    money,
    parse_day,
)
from sandbox.xero.documents import DocumentsState, _amount_type, _currency_rate, _totals

MSG_INVOICE_NUMBER = "Invoice # must be unique."


MSG_PAID = "This document cannot be edited as it has a payment or credit note allocated to it."


MSG_STATUS = "Invoice not of valid status for modification"


class InvoicesState(DocumentsState):
    """Invoices of every organisation."""

    def invoices(self, tenant_id: str) -> list[JSON]:
        with self.lock:
            t = self.tenant(tenant_id)
            return [self.render_invoice(t, i, 4) for i in self.ordered(t, t.invoices, "InvoiceID")]

    def find_invoice(self, t: Tenant, ref: str) -> JSON | None:
        """By InvoiceID, else by InvoiceNumber (ACCREC numbers are unique per organisation)."""
        found = t.invoices.get(ref.lower()) or t.invoices.get(ref)
        if found is not None:
            return found
        matches = [i for i in t.invoices.values() if i.get("InvoiceNumber") == ref]
        matches.sort(key=lambda i: i["Type"] != "ACCREC")
        return matches[0] if matches else None

    def save_invoice(
        self, tenant_id: str, submitted: JSON, *, create_only: bool, unitdp: int
    ) -> Outcome:
        """Create (PUT) or create-or-update by InvoiceID/InvoiceNumber (POST) one invoice."""
        t = self.tenant(tenant_id)
        existing: JSON | None = None
        if submitted.get("InvoiceID"):
            existing = t.invoices.get(str(submitted["InvoiceID"]).lower())
            if existing is None:
                return None, [f"Invoice with InvoiceID {submitted['InvoiceID']} was not found."]
        elif submitted.get("InvoiceNumber") and submitted.get("Type", "ACCREC") == "ACCREC":
            number = str(submitted["InvoiceNumber"])
            existing = next(
                (
                    i
                    for i in t.invoices.values()
                    if i["Type"] == "ACCREC" and i.get("InvoiceNumber") == number
                ),
                None,
            )
            if existing is not None and create_only:
                return None, [MSG_INVOICE_NUMBER]
        if existing is not None and create_only:
            return None, [f"Invoice with InvoiceID {existing['InvoiceID']} already exists."]
        if existing is not None:
            return self._update_invoice(t, existing, submitted, unitdp)
        return self._build_invoice(t, submitted, None, unitdp)

    def _update_invoice(self, t: Tenant, existing: JSON, submitted: JSON, unitdp: int) -> Outcome:
        """Apply FACTS' status rules, then rebuild the invoice from old fields + new ones."""
        if existing["AmountPaid"] > 0 or existing["AmountCredited"] > 0:
            return None, [MSG_PAID]
        old = existing["Status"]
        new = str(submitted.get("Status") or old).upper()
        allowed = {
            "DRAFT": {"DRAFT", "SUBMITTED", "AUTHORISED", "DELETED"},
            "SUBMITTED": {"DRAFT", "SUBMITTED", "AUTHORISED", "DELETED"},
            "AUTHORISED": {"AUTHORISED", "VOIDED"},
        }
        if new not in allowed.get(old, set()):
            return None, [MSG_STATUS]
        if new in ("DELETED", "VOIDED"):
            existing["Status"] = new
            existing["AmountDue"] = Decimal("0.00")
            self._touch(t, existing, "InvoiceID", self.clock())
            return existing, []
        return self._build_invoice(t, submitted, existing, unitdp)

    def _build_invoice(
        self, t: Tenant, submitted: JSON, existing: JSON | None, unitdp: int
    ) -> Outcome:
        errors: list[str] = []
        base: JSON = copy.deepcopy(existing) if existing else {}

        def pick(name: str, default: Any = None) -> Any:
            return submitted[name] if name in submitted else base.get(name, default)

        doc_type = str(base.get("Type") or submitted.get("Type") or "")
        if doc_type not in ("ACCREC", "ACCPAY"):
            errors.append("Invoice Type must be ACCREC or ACCPAY.")
        status = str(pick("Status") or "DRAFT").upper()
        if existing is None and status not in ("DRAFT", "SUBMITTED", "AUTHORISED"):
            errors.append(MSG_STATUS)

        contact, new_contact, contact_errors = self._invoice_contact(t, submitted, base)
        errors += contact_errors

        issued, due = self._invoice_dates(pick, doc_type, status, errors)

        amount_type = _amount_type(pick("LineAmountTypes"), errors)

        currency = str(pick("CurrencyCode") or t.base_currency).upper()
        if currency not in t.currencies:
            errors.append(MSG_CURRENCY.format(code=currency))

        number = pick("InvoiceNumber")
        if number is not None and len(str(number)) > 255:
            errors.append("Invoice # must not exceed 255 characters.")
        elif (
            number
            and doc_type == "ACCREC"
            and any(
                i["Type"] == "ACCREC"
                and i.get("InvoiceNumber") == str(number)
                and i is not existing
                for i in t.invoices.values()
            )
        ):
            errors.append(MSG_INVOICE_NUMBER)

        lines = self._lines(t, submitted, base, doc_type, amount_type, status, unitdp, errors)

        if errors:
            return None, errors
        assert issued is not None

        if new_contact is not None:
            saved, problems = self.save_contact(t.tenant_id, new_contact, create_only=True)
            if saved is None:
                return None, problems
            contact = saved
        assert contact is not None
        contact["IsCustomer" if doc_type == "ACCREC" else "IsSupplier"] = True

        if doc_type == "ACCREC" and not number:
            number = self._next_invoice_number(t)
        sub_total, total_tax, total_discount = _totals(lines, amount_type)
        total = sub_total + total_tax
        invoice: JSON = {
            "Type": doc_type,
            "InvoiceID": base.get("InvoiceID") or str(uuid.uuid4()),
            "InvoiceNumber": str(number or ""),
            "Reference": str(pick("Reference") or ""),
            "Contact": {"ContactID": contact["ContactID"], "Name": contact["Name"]},
            **_day_fields("Date", issued),
            "Status": status,
            "LineAmountTypes": amount_type,
            "LineItems": lines,
            "SubTotal": sub_total,
            "TotalTax": total_tax,
            "Total": total,
            "TotalDiscount": total_discount,
            "AmountDue": total,
            "AmountPaid": Decimal("0.00"),
            "AmountCredited": Decimal("0.00"),
            "CurrencyCode": currency,
            "CurrencyRate": _currency_rate(pick("CurrencyRate"), currency == t.base_currency),
            "IsDiscounted": total_discount > 0,
            "HasAttachments": False,
            "HasErrors": False,
            "SentToContact": bool(pick("SentToContact", False)),
            "BrandingThemeID": pick("BrandingThemeID") or None,
            "Url": pick("Url") or None,
            "Payments": [],
            "Prepayments": [],
            "Overpayments": [],
            "CreditNotes": [],
        }
        if due is not None:
            invoice.update(_day_fields("DueDate", due))
        for optional in ("BrandingThemeID", "Url"):
            if invoice[optional] is None:
                del invoice[optional]
        self._touch(t, invoice, "InvoiceID", self.clock())
        t.invoices[invoice["InvoiceID"]] = invoice
        return invoice, []

    def _invoice_dates(
        self, pick: Callable[[str], Any], doc_type: str, status: str, errors: list[str]
    ) -> tuple[date | None, date | None]:
        """Date (today when absent) and DueDate, which a sales invoice past draft needs."""
        today = _utc(self.clock()).date()
        issued = parse_day(pick("Date")) if pick("Date") else today
        due = parse_day(pick("DueDate")) if pick("DueDate") else None
        if issued is None:
            errors.append(f"The Date '{pick('Date')}' is not a valid date.")
        if pick("DueDate") and due is None:
            errors.append(f"The DueDate '{pick('DueDate')}' is not a valid date.")
        if doc_type == "ACCREC" and status in ("SUBMITTED", "AUTHORISED") and not pick("DueDate"):
            errors.append("Due Date is mandatory.")
        return issued, due

    def _next_invoice_number(self, t: Tenant) -> str:
        taken = {i.get("InvoiceNumber") for i in t.invoices.values() if i["Type"] == "ACCREC"}
        while True:
            t.invoice_counter += 1
            candidate = f"INV-{t.invoice_counter:04d}"
            if candidate not in taken:
                return candidate

    def _settle(self, t: Tenant, invoice: JSON, applied: str, amount: Decimal, on: date) -> None:
        """Apply a payment (AmountPaid) or credit (AmountCredited); PAID when nothing is due."""
        invoice[applied] = money(invoice[applied] + amount)
        invoice["AmountDue"] = money(invoice["AmountDue"] - amount)
        if invoice["AmountDue"] == 0:
            invoice["Status"] = "PAID"
            invoice["FullyPaidOnDate"] = _day_fields("Date", on)["Date"]
        self._touch(t, invoice, "InvoiceID", self.clock())
