"""Purchase orders: unique numbers, an existing contact only, the status changes the API
allows, billed orders final."""

from __future__ import annotations

import copy
import uuid
from typing import Any

from sandbox.xero.common import (
    JSON,
    MSG_CURRENCY,
    Outcome,
    Tenant,
    _day_fields,
    _utc,
    parse_day,
)
from sandbox.xero.documents import PO, DocumentsState, _amount_type, _currency_rate, _totals

MSG_PO_STATUS = "Purchase order not of valid status for modification"


MSG_PO_BILLED = "This purchase order cannot be edited as it has been billed."


MSG_PO_CONTACT = "A valid Contact must be specified: purchase orders do not create contacts."


MSG_PO_NUMBER = "Purchase Order Number must be unique."


#: Purchase order status changes the API allows (FACTS "Documents"); BILLED is set by Xero when a
#: bill is created from the order, and a billed order is final. Unconfirmed: AUTHORISED ->
#: DELETED (Xero's UI deletes approved orders), kept plausible rather than exact.
_PO_TRANSITIONS = {
    "DRAFT": {"DRAFT", "SUBMITTED", "AUTHORISED", "DELETED"},
    "SUBMITTED": {"DRAFT", "SUBMITTED", "AUTHORISED", "DELETED"},
    "AUTHORISED": {"AUTHORISED", "DELETED"},
}


class PurchaseOrdersState(DocumentsState):
    """Purchase orders of every organisation."""

    def purchase_orders(self, tenant_id: str) -> list[JSON]:
        with self.lock:
            t = self.tenant(tenant_id)
            return [
                self.render_invoice(t, po, 4)
                for po in self.ordered(t, t.purchase_orders, "PurchaseOrderID")
            ]

    def bill_purchase_order(self, tenant_id: str, purchase_order_id: str) -> JSON:
        """Mark an AUTHORISED purchase order BILLED, as creating a bill from it in Xero does."""
        with self.lock:
            t = self.tenant(tenant_id)
            po = t.purchase_orders[purchase_order_id]
            if po["Status"] != "AUTHORISED":
                raise ValueError("Only AUTHORISED purchase orders can be billed")
            po["Status"] = "BILLED"
            self._touch(t, po, "PurchaseOrderID", self.clock())
            return self.render_invoice(t, po, 4)

    def find_purchase_order(self, t: Tenant, ref: str) -> JSON | None:
        """By PurchaseOrderID, else by PurchaseOrderNumber (unique per organisation)."""
        found = t.purchase_orders.get(ref.lower()) or t.purchase_orders.get(ref)
        if found is not None:
            return found
        return next(
            (po for po in t.purchase_orders.values() if po["PurchaseOrderNumber"] == ref), None
        )

    def save_purchase_order(
        self, tenant_id: str, submitted: JSON, *, create_only: bool, unitdp: int
    ) -> Outcome:
        """Create (PUT) or create-or-update by PurchaseOrderID/Number (POST) one order."""
        t = self.tenant(tenant_id)
        existing: JSON | None = None
        if submitted.get("PurchaseOrderID"):
            existing = t.purchase_orders.get(str(submitted["PurchaseOrderID"]).lower())
            if existing is None:
                return None, [
                    f"Purchase order with PurchaseOrderID {submitted['PurchaseOrderID']} "
                    "was not found."
                ]
        elif submitted.get("PurchaseOrderNumber") and not create_only:
            existing = self.find_purchase_order(t, str(submitted["PurchaseOrderNumber"]))
        if existing is not None and create_only:
            return None, [
                f"Purchase order with PurchaseOrderID {existing['PurchaseOrderID']} already exists."
            ]
        if existing is None:
            return self._build_purchase_order(t, submitted, None, unitdp)
        old = existing["Status"]
        new = str(submitted.get("Status") or old).upper()
        if old == "BILLED":
            return None, [MSG_PO_BILLED]
        if new not in _PO_TRANSITIONS.get(old, set()):
            return None, [MSG_PO_STATUS]
        if new == "DELETED":
            existing["Status"] = new
            self._touch(t, existing, "PurchaseOrderID", self.clock())
            return existing, []
        return self._build_purchase_order(t, submitted, existing, unitdp)

    def _build_purchase_order(
        self, t: Tenant, submitted: JSON, existing: JSON | None, unitdp: int
    ) -> Outcome:
        errors: list[str] = []
        base: JSON = copy.deepcopy(existing) if existing else {}

        def pick(name: str, default: Any = None) -> Any:
            return submitted[name] if name in submitted else base.get(name, default)

        status = str(pick("Status") or "DRAFT").upper()
        if existing is None and status not in ("DRAFT", "SUBMITTED", "AUTHORISED"):
            errors.append(MSG_PO_STATUS)
        contact, new_contact, contact_errors = self._invoice_contact(t, submitted, base)
        errors += contact_errors
        if new_contact is not None:
            errors.append(MSG_PO_CONTACT)
        issued = parse_day(pick("Date")) if pick("Date") else _utc(self.clock()).date()
        if issued is None:
            errors.append(f"The Date '{pick('Date')}' is not a valid date.")
        delivery = parse_day(pick("DeliveryDate")) if pick("DeliveryDate") else None
        if pick("DeliveryDate") and delivery is None:
            errors.append(f"The DeliveryDate '{pick('DeliveryDate')}' is not a valid date.")
        amount_type = _amount_type(pick("LineAmountTypes"), errors)
        currency = str(pick("CurrencyCode") or t.base_currency).upper()
        if currency not in t.currencies:
            errors.append(MSG_CURRENCY.format(code=currency))
        number = str(pick("PurchaseOrderNumber") or "")
        if number and any(
            po["PurchaseOrderNumber"] == number and po is not existing
            for po in t.purchase_orders.values()
        ):
            errors.append(MSG_PO_NUMBER)
        lines = self._lines(t, submitted, base, PO, amount_type, status, unitdp, errors)
        if errors:
            return None, errors
        assert issued is not None and contact is not None
        sub_total, total_tax, total_discount = _totals(lines, amount_type)
        po: JSON = {
            "PurchaseOrderID": base.get("PurchaseOrderID") or str(uuid.uuid4()),
            "PurchaseOrderNumber": number or self._next_po_number(t),
            **_day_fields("Date", issued),
            "Reference": str(pick("Reference") or ""),
            "Contact": {"ContactID": contact["ContactID"], "Name": contact["Name"]},
            "Status": status,
            "LineAmountTypes": amount_type,
            "LineItems": lines,
            "SubTotal": sub_total,
            "TotalTax": total_tax,
            "Total": sub_total + total_tax,
            "TotalDiscount": total_discount,
            "CurrencyCode": currency,
            "CurrencyRate": _currency_rate(pick("CurrencyRate"), currency == t.base_currency),
            "IsDiscounted": total_discount > 0,
            "HasAttachments": False,
            "HasErrors": False,
            "SentToContact": bool(pick("SentToContact", False)),
        }
        for text in ("DeliveryAddress", "AttentionTo", "Telephone", "DeliveryInstructions"):
            po[text] = str(pick(text) or "")
        if delivery is not None:
            po.update(_day_fields("DeliveryDate", delivery))
        self._touch(t, po, "PurchaseOrderID", self.clock())
        t.purchase_orders[po["PurchaseOrderID"]] = po
        return po, []

    def _next_po_number(self, t: Tenant) -> str:
        taken = {po["PurchaseOrderNumber"] for po in t.purchase_orders.values()}
        while True:
            t.po_counter += 1
            candidate = f"PO-{t.po_counter:04d}"
            if candidate not in taken:
                return candidate
