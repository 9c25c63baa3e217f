"""Items: unique codes (case-insensitive), sales and purchase details checked against the
chart of accounts and tax rates, unit prices at the asked precision."""

from __future__ import annotations

import copy
import uuid

from sandbox.xero.common import (
    JSON,
    MSG_ACCOUNT,
    MSG_TAX,
    Outcome,
    Tenant,
    ValidationFailed,
    _number,
    _places,
)
from sandbox.xero.organisations import OrganisationsState

_ITEM_READ_ONLY = {
    "ItemID",
    "UpdatedDateUTC",
    "ValidationErrors",
    "StatusAttributeString",
    "TotalCostPool",
    "QuantityOnHand",
    "IsTrackedAsInventory",
}


class ItemsState(OrganisationsState):
    """Items of every organisation."""

    def add_item(self, tenant_id: str, item: JSON) -> JSON:
        """Seed an item without spending API calls; raises ValidationFailed like a 400."""
        with self.lock:
            saved, errors = self.save_item(tenant_id, item, create_only=True, unitdp=4)
            if saved is None:
                raise ValidationFailed(errors)
            return copy.deepcopy(saved)

    def items(self, tenant_id: str) -> list[JSON]:
        with self.lock:
            t = self.tenant(tenant_id)
            return copy.deepcopy(self.ordered(t, t.items, "ItemID"))

    def find_item(self, t: Tenant, ref: str) -> JSON | None:
        """By ItemID, else by Code (case-insensitive, like Xero)."""
        found = t.items.get(ref.lower()) or t.items.get(ref)
        if found is not None:
            return found
        return next((i for i in t.items.values() if i["Code"].lower() == ref.lower()), None)

    def save_item(
        self, tenant_id: str, submitted: JSON, *, create_only: bool, unitdp: int
    ) -> Outcome:
        """Create (PUT) or create-or-update by ItemID or Code (POST) one item."""
        t = self.tenant(tenant_id)
        existing: JSON | None = None
        if submitted.get("ItemID"):
            existing = t.items.get(str(submitted["ItemID"]).lower())
            if existing is None:
                return None, [f"The item with ItemID {submitted['ItemID']} could not be found."]
        elif submitted.get("Code") and not create_only:
            existing = self.find_item(t, str(submitted["Code"]))
        if existing is not None and create_only:
            return None, [f"Item code '{existing['Code']}' already exists."]
        merged: JSON = (
            copy.deepcopy(existing)
            if existing
            else {
                "IsSold": True,
                "IsPurchased": True,
                "IsTrackedAsInventory": False,
            }
        )
        for key, value in submitted.items():
            if key not in _ITEM_READ_ONLY:
                merged[key] = value
        errors = self._item_errors(t, merged, existing)
        for details in ("SalesDetails", "PurchaseDetails"):
            block = merged.get(details)
            if isinstance(block, dict) and block.get("UnitPrice") is not None:
                try:
                    block["UnitPrice"] = _places(_number(block["UnitPrice"]), unitdp)
                except ValueError:
                    errors.append(f"{details}.UnitPrice must be a number.")
        if errors:
            return None, errors
        merged.setdefault("ItemID", str(uuid.uuid4()))
        self._touch(t, merged, "ItemID", self.clock())
        t.items[merged["ItemID"]] = merged
        return merged, []

    def _item_errors(self, t: Tenant, item: JSON, existing: JSON | None) -> list[str]:
        errors: list[str] = []
        code = str(item.get("Code") or "").strip()
        own_id = existing["ItemID"] if existing else None
        if not code:
            errors.append("Item Code must be specified.")
        elif len(code) > 30:
            errors.append("Item Code must not exceed 30 characters.")
        elif any(
            i["Code"].lower() == code.lower() and i["ItemID"] != own_id for i in t.items.values()
        ):
            errors.append(f"Item code '{code}' already exists.")
        if len(str(item.get("Name") or "")) > 50:
            errors.append("Item Name must not exceed 50 characters.")
        for details, doc_type in (("SalesDetails", "ACCREC"), ("PurchaseDetails", "ACCPAY")):
            block = item.get(details)
            if block is None:
                continue
            if not isinstance(block, dict):
                errors.append(f"{details} must be an object.")
                continue
            account = block.get("AccountCode")
            if account and self._account_for_line(t, str(account)) is None:
                errors.append(MSG_ACCOUNT.format(code=account))
            tax = block.get("TaxType")
            if tax and self._tax_ok(t, str(tax), doc_type) is None:
                errors.append(MSG_TAX.format(code=tax))
        return errors
