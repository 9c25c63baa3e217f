"""What invoices, credit notes and purchase orders share: the contact a document names
(found or to create), its lines (item defaults, discounts, accounts, tax per line
rounded half-up to cents then summed) and its rendering."""

from __future__ import annotations

import copy
import uuid
from decimal import Decimal
from typing import Any

from sandbox.xero.common import (
    HUNDRED,
    JSON,
    MSG_ACCOUNT,
    MSG_ITEM,
    MSG_TAX,
    Tenant,
    _number,
    _places,
    money,
)
from sandbox.xero.contacts import _CONTACT_READ_ONLY, MSG_ARCHIVED, ContactsState
from sandbox.xero.items import ItemsState

PO = "PURCHASEORDER"  # the document type `_line` validates a purchase order's lines as


class DocumentsState(ContactsState, ItemsState):
    """Lines, contacts and rendering of documents."""

    def render_invoice(self, t: Tenant, invoice: JSON, unitdp: int, lines: bool = True) -> JSON:
        """A deep copy of an invoice or purchase order with the contact as it is now and unit
        amounts at the asked precision."""
        out = copy.deepcopy(invoice)
        contact = t.contacts.get(invoice["Contact"]["ContactID"])
        if contact is not None:
            out["Contact"] = copy.deepcopy(contact)
        if not lines:
            out.pop("LineItems", None)
        for line in out.get("LineItems", []):
            if unitdp < 4 and line.get("UnitAmount") is not None:
                line["UnitAmount"] = _places(line["UnitAmount"], 2)
        return out

    def _invoice_contact(
        self, t: Tenant, submitted: JSON, base: JSON
    ) -> tuple[JSON | None, JSON | None, list[str]]:
        """(existing contact, contact to create, errors): by ContactID, ContactNumber, Name."""
        ref = submitted.get("Contact")
        if ref is None and base:
            return t.contacts.get(base["Contact"]["ContactID"]), None, []
        if not isinstance(ref, dict) or not ref:
            return None, None, ["A Contact must be specified for this type of transaction."]
        found: JSON | None = None
        if ref.get("ContactID"):
            found = t.contacts.get(str(ref["ContactID"]).lower())
            if found is None:
                return None, None, [f"Contact with ContactID {ref['ContactID']} was not found."]
        elif ref.get("ContactNumber"):
            found = next(
                (c for c in t.contacts.values() if c.get("ContactNumber") == ref["ContactNumber"]),
                None,
            )
        if found is None and ref.get("Name"):
            name = str(ref["Name"]).strip().lower()
            named = [c for c in t.contacts.values() if c["Name"].lower() == name]
            named.sort(key=lambda c: c["ContactStatus"] != "ACTIVE")
            found = named[0] if named else None
            if found is None:
                fresh = {k: v for k, v in ref.items() if k not in _CONTACT_READ_ONLY}
                return None, fresh, []
        if found is None:
            return None, None, ["A Contact must be specified for this type of transaction."]
        if found["ContactStatus"] == "ARCHIVED":
            return None, None, [MSG_ARCHIVED]
        return found, None, []

    def _lines(
        self,
        t: Tenant,
        submitted: JSON,
        base: JSON,
        doc_type: str,
        amount_type: str,
        status: str,
        unitdp: int,
        errors: list[str],
    ) -> list[JSON]:
        """A document's lines, submitted or kept from `base`; problems go to `errors`."""
        base_lines: list[JSON] = base.get("LineItems", [])
        raw_lines = submitted.get("LineItems", base_lines)
        if base and "LineItems" not in submitted and amount_type != base["LineAmountTypes"]:
            # Kept lines are recomputed under the new LineAmountTypes, not with their old tax.
            raw_lines = [{k: v for k, v in li.items() if k != "TaxAmount"} for li in base_lines]
        if raw_lines is not None and not isinstance(raw_lines, list):
            errors.append("LineItems must be a list.")
            raw_lines = []
        if not raw_lines and status != "DRAFT":
            errors.append("At least one line item must be specified.")
        old_ids = {li["LineItemID"] for li in base_lines}
        lines: list[JSON] = []
        for index, raw in enumerate(raw_lines or [], start=1):
            if not isinstance(raw, dict):
                errors.append(f"Line {index} must be an object.")
                continue
            line, line_errors = self._line(t, raw, doc_type, amount_type, status, unitdp, old_ids)
            errors += line_errors
            lines.append(line)
        return lines

    def _line(
        self,
        t: Tenant,
        raw: JSON,
        doc_type: str,
        amount_type: str,
        status: str,
        unitdp: int,
        old_ids: set[str],
    ) -> tuple[JSON, list[str]]:
        """Validate one line and compute its amounts; see the module docstring for rounding."""
        errors: list[str] = []
        given_id = str(raw.get("LineItemID") or "").lower()
        line: JSON = {"LineItemID": given_id if given_id in old_ids else str(uuid.uuid4())}
        line["Description"] = raw.get("Description") or ""
        defaults = self._item_defaults(t, raw, doc_type, line, errors)

        def number(name: str, fallback: Any = None) -> Decimal | None:
            value = raw.get(name, fallback)
            if value is None:
                return None
            try:
                return _number(value)
            except ValueError:
                errors.append(f"{name} must be a number.")
                return None

        quantity = number("Quantity")
        unit = number("UnitAmount", defaults.get("UnitPrice"))
        given_line_amount = number("LineAmount")
        if quantity is None:
            quantity = Decimal(1) if (unit is not None or given_line_amount is not None) else None
        if unit is None and given_line_amount is not None and quantity:
            unit = given_line_amount / quantity
        quantity = _places(quantity, 4) if quantity is not None else Decimal("0.0000")
        unit = _places(unit, unitdp) if unit is not None else Decimal("0.00")
        gross = quantity * unit

        rate_off = number("DiscountRate")
        amount_off = number("DiscountAmount")
        discount = _discount(line, gross, rate_off, amount_off, doc_type, errors)
        line_amount = money(gross - discount)

        account = self._line_account(t, raw, defaults, status, line_amount, line, errors)
        tax_type = (
            raw.get("TaxType")
            or defaults.get("TaxType")
            or (account["TaxType"] if account else None)
        )
        rate = Decimal(0)
        if tax_type:
            tax_rate = self._tax_ok(t, str(tax_type), doc_type)
            if tax_rate is None:
                errors.append(MSG_TAX.format(code=tax_type))
            else:
                rate = tax_rate["EffectiveRate"]
                line["TaxType"] = tax_type
        tax = _line_tax(amount_type, number("TaxAmount"), line_amount, rate)
        line.update(
            {
                "Quantity": quantity,
                "UnitAmount": unit,
                "TaxAmount": tax,
                "LineAmount": line_amount,
                "Tracking": list(raw.get("Tracking") or []),
            }
        )
        return line, errors

    def _item_defaults(
        self, t: Tenant, raw: JSON, doc_type: str, line: JSON, errors: list[str]
    ) -> JSON:
        """The line's item (by ItemCode): named on the line, its sales or purchase details
        returned as the line's defaults, its description used when the line has none."""
        if not raw.get("ItemCode"):
            return {}
        item = self.find_item(t, str(raw["ItemCode"]))
        if item is None:
            errors.append(MSG_ITEM.format(code=raw["ItemCode"]))
            return {}
        line["ItemCode"] = item["Code"]
        line["Item"] = {
            "ItemID": item["ItemID"],
            "Name": item.get("Name", ""),
            "Code": item["Code"],
        }
        sales = doc_type == "ACCREC"
        desc_key = "Description" if sales else "PurchaseDescription"
        line["Description"] = raw.get("Description") or item.get(desc_key) or ""
        return dict(item.get("SalesDetails" if sales else "PurchaseDetails") or {})

    def _line_account(
        self,
        t: Tenant,
        raw: JSON,
        defaults: JSON,
        status: str,
        line_amount: Decimal,
        line: JSON,
        errors: list[str],
    ) -> JSON | None:
        """The line's account (given, else the item's); a line with an amount needs one
        unless the document is a draft."""
        account_code = raw.get("AccountCode") or defaults.get("AccountCode")
        if not account_code:
            if status != "DRAFT" and line_amount != 0:
                errors.append("Account code must be specified for line items with an amount.")
            return None
        account = self._account_for_line(t, str(account_code))
        if account is None:
            errors.append(MSG_ACCOUNT.format(code=account_code))
            return None
        line["AccountCode"] = account["Code"]
        line["AccountID"] = account["AccountID"]
        return account


def _discount(
    line: JSON,
    gross: Decimal,
    rate_off: Decimal | None,
    amount_off: Decimal | None,
    doc_type: str,
    errors: list[str],
) -> Decimal:
    """A line's discount at cents: by amount (invoices) or by rate (invoices and orders)."""
    if amount_off and doc_type == PO:
        errors.append("DiscountAmount is not supported on purchase orders; use DiscountRate.")
    elif (rate_off or amount_off) and doc_type not in ("ACCREC", PO):
        errors.append("Discounts are only supported on ACCREC invoices.")
    elif rate_off and amount_off:
        errors.append("Specify either DiscountRate or DiscountAmount, not both.")
    elif amount_off:
        line["DiscountAmount"] = money(amount_off)
        return money(amount_off)
    elif rate_off:
        line["DiscountRate"] = _places(rate_off, 2)
        return money(gross * rate_off / HUNDRED)
    return Decimal("0.00")


def _line_tax(
    amount_type: str, override: Decimal | None, line_amount: Decimal, rate: Decimal
) -> Decimal:
    """A line's tax at cents, half-up: none, the given TaxAmount, or the rate's share."""
    if amount_type == "NoTax":
        return Decimal("0.00")
    if override is not None:
        return money(override)
    if amount_type == "Inclusive":
        return money(line_amount - line_amount / (1 + rate / HUNDRED))
    return money(line_amount * rate / HUNDRED)


def _amount_type(given: Any, errors: list[str]) -> str:
    """A document's LineAmountTypes (Exclusive when absent); a bad value goes to `errors`."""
    amount_types = {"exclusive": "Exclusive", "inclusive": "Inclusive", "notax": "NoTax"}
    amount_type = amount_types.get(str(given or "Exclusive").lower())
    if amount_type is None:
        errors.append(f"LineAmountTypes '{given}' is not valid.")
    return amount_type or "Exclusive"


def _totals(lines: list[JSON], amount_type: str) -> tuple[Decimal, Decimal, Decimal]:
    """SubTotal, TotalTax and TotalDiscount: sums of per-line figures already at cents."""
    total_tax = sum((li["TaxAmount"] for li in lines), Decimal("0.00"))
    amounts = sum((li["LineAmount"] for li in lines), Decimal("0.00"))
    sub_total = amounts - total_tax if amount_type == "Inclusive" else amounts
    discount = Decimal("0.00")
    for li in lines:
        if "DiscountAmount" in li:
            discount += li["DiscountAmount"]
        elif "DiscountRate" in li:
            discount += money(li["Quantity"] * li["UnitAmount"] * li["DiscountRate"] / HUNDRED)
    return money(sub_total), money(total_tax), money(discount)


def _currency_rate(given: Any, is_base: bool) -> Decimal:
    if is_base or given is None:
        return Decimal("1.000000")
    try:
        return _places(_number(given), 6)
    except ValueError:
        return Decimal("1.000000")
