"""Payments on invoices (to a bank account, at most the amount due), overpayments and
prepayments received, and refunds on credit."""

from __future__ import annotations

import copy
import uuid
from datetime import date
from decimal import Decimal
from typing import Literal

from sandbox.xero.common import (
    JSON,
    Outcome,
    Tenant,
    _day_fields,
    _number,
    _utc,
    money,
    parse_day,
)
from sandbox.xero.invoices import InvoicesState


class PaymentsState(InvoicesState):
    """Payments, prepaid credit and refunds."""

    def add_payment(
        self, tenant_id: str, invoice_id: str, amount: Decimal, on: date | None = None
    ) -> JSON:
        """Record a payment against an AUTHORISED invoice (what a user does in Xero's UI)."""
        with self.lock:
            invoice = self.tenant(tenant_id).invoices[invoice_id]
            if invoice["Status"] != "AUTHORISED":
                raise ValueError("Payments can only be made against AUTHORISED invoices")
            if amount <= 0 or amount > invoice["AmountDue"]:
                raise ValueError(f"payment {amount} must be > 0 and <= {invoice['AmountDue']}")
            now = self.clock()
            paid_on = on or _utc(now).date()
            payment: JSON = {
                "PaymentID": str(uuid.uuid4()),
                "Date": _day_fields("Date", paid_on)["Date"],
                "Amount": money(amount),
                "Reference": "",
                "CurrencyRate": invoice.get("CurrencyRate", Decimal("1.000000")),
                "HasAccount": False,
                "HasValidationErrors": False,
            }
            invoice["Payments"].append(payment)
            self._settle(self.tenant(tenant_id), invoice, "AmountPaid", amount, paid_on)
            return copy.deepcopy(payment)

    def save_payment(self, t: Tenant, submitted: JSON) -> Outcome:
        """PUT /Payments, one element: a payment on an AUTHORISED invoice to a bank account
        (or one with EnablePaymentsToAccount), at most the amount due."""
        ref = submitted.get("Invoice")
        invoice = (
            self.find_invoice(t, str(ref.get("InvoiceID", ""))) if isinstance(ref, dict) else None
        )
        if invoice is None:
            return None, ["Invoice could not be found."]
        given = submitted.get("Account")
        account = None
        if isinstance(given, dict):
            account = next(
                (
                    a
                    for a in t.accounts.values()
                    if a["AccountID"] == given.get("AccountID")
                    or (given.get("Code") and a.get("Code") == given.get("Code"))
                ),
                None,
            )
        if account is None or not (
            account["Type"] == "BANK" or account.get("EnablePaymentsToAccount")
        ):
            return None, [
                "Payments must be made to a bank account, or an account with payments enabled."
            ]
        try:
            amount = money(_number(submitted.get("Amount")))
        except ValueError:
            return None, ["Amount must be a number."]
        if invoice["Status"] != "AUTHORISED":
            return None, ["Payments can only be made against AUTHORISED invoices."]
        if not 0 < amount <= invoice["AmountDue"]:
            return None, [
                f"The payment amount must be more than 0 and at most the amount due "
                f"({invoice['AmountDue']})."
            ]
        on = parse_day(submitted.get("Date")) or _utc(self.clock()).date()
        payment: JSON = {
            "PaymentID": str(uuid.uuid4()),
            "Date": _day_fields("Date", on)["Date"],
            "Amount": amount,
            "Reference": str(submitted.get("Reference") or ""),
            "CurrencyRate": invoice.get("CurrencyRate", Decimal("1.000000")),
            "HasAccount": True,
            "HasValidationErrors": False,
        }
        invoice["Payments"].append(payment)
        t.payment_accounts[payment["PaymentID"]] = {
            "AccountID": account["AccountID"],
            "Code": account.get("Code"),
        }
        self._settle(t, invoice, "AmountPaid", amount, on)
        return self.render_payment(t, invoice, payment), []

    def payments(self, t: Tenant) -> list[JSON]:
        """Every payment on the tenant's invoices, as GET /Payments shows them."""
        return [
            self.render_payment(t, invoice, payment)
            for invoice in self.ordered(t, t.invoices, "InvoiceID")
            for payment in invoice.get("Payments") or []
        ]

    def render_payment(self, t: Tenant, invoice: JSON, payment: JSON) -> JSON:
        bank = next((a for a in t.accounts.values() if a["Type"] == "BANK"), None)
        account = t.payment_accounts.get(payment["PaymentID"]) or (
            {"AccountID": bank["AccountID"], "Code": bank.get("Code")} if bank else None
        )
        kind = "ACCRECPAYMENT" if invoice["Type"] == "ACCREC" else "ACCPAYPAYMENT"
        return {
            **copy.deepcopy(payment),
            "Status": "AUTHORISED",
            "PaymentType": kind,
            "UpdatedDateUTC": invoice["UpdatedDateUTC"],
            "Invoice": {
                "InvoiceID": invoice["InvoiceID"],
                "InvoiceNumber": invoice.get("InvoiceNumber"),
                "Type": invoice["Type"],
            },
            **({"Account": account} if account else {}),
        }

    def add_prepaid(
        self,
        tenant_id: str,
        kind: Literal["Overpayments", "Prepayments"],
        contact_id: str,
        amount: Decimal,
    ) -> JSON:
        """Receive an overpayment or a prepayment from a customer (a bank transaction in Xero's
        UI): AUTHORISED, all of it RemainingCredit. Neither has a webhook (FACTS)."""
        with self.lock:
            t = self.tenant(tenant_id)
            contact = t.contacts[contact_id]
            if amount <= 0:
                raise ValueError("an overpayment or prepayment must be more than 0")
            singular = kind[:-1]
            doc: JSON = {
                f"{singular}ID": str(uuid.uuid4()),
                "Type": f"RECEIVE-{singular.upper()}",
                "Contact": {"ContactID": contact_id, "Name": contact["Name"]},
                **_day_fields("Date", _utc(self.clock()).date()),
                "Status": "AUTHORISED",
                "LineAmountTypes": "NoTax",
                "SubTotal": money(amount),
                "TotalTax": Decimal("0.00"),
                "Total": money(amount),
                "RemainingCredit": money(amount),
                "CurrencyCode": t.base_currency,
                "Allocations": [],
                "Payments": [],
            }
            self._touch(t, doc, f"{singular}ID", self.clock())
            getattr(t, kind.lower())[doc[f"{singular}ID"]] = doc
            return copy.deepcopy(doc)

    def refund(
        self,
        tenant_id: str,
        kind: Literal["CreditNotes", "Overpayments", "Prepayments"],
        doc_id: str,
        amount: Decimal,
    ) -> JSON:
        """Pay money back on a credit note, overpayment or prepayment (a payment on it, as
        Xero records a refund): only AUTHORISED ones, at most the credit left; PAID at 0."""
        with self.lock:
            t = self.tenant(tenant_id)
            store = {
                "CreditNotes": t.credit_notes,
                "Overpayments": t.overpayments,
                "Prepayments": t.prepayments,
            }[kind]
            doc = store[doc_id]
            if doc["Status"] != "AUTHORISED":
                raise ValueError("Refunds can only be made on AUTHORISED documents")
            if not 0 < amount <= doc["RemainingCredit"]:
                raise ValueError(f"refund {amount} must be > 0 and <= {doc['RemainingCredit']}")
            doc["Payments"] = [
                *doc.get("Payments", []),
                {
                    "PaymentID": str(uuid.uuid4()),
                    "Amount": money(amount),
                    **_day_fields("Date", _utc(self.clock()).date()),
                },
            ]
            doc["RemainingCredit"] = money(doc["RemainingCredit"] - amount)
            if doc["RemainingCredit"] == 0:
                doc["Status"] = "PAID"
            id_field = "CreditNoteID" if kind == "CreditNotes" else f"{kind[:-1]}ID"
            self._touch(t, doc, id_field, self.clock())
            return copy.deepcopy(doc)
