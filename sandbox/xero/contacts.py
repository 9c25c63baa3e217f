"""Contacts: unique active names and unique numbers, read-only fields, and the balances
a contact shows."""

from __future__ import annotations

import copy
import uuid
from decimal import Decimal

from sandbox.xero.base import SandboxBase
from sandbox.xero.common import (
    JSON,
    Outcome,
    Tenant,
    ValidationFailed,
    _utc,
    parse_day,
)

MSG_ARCHIVED = (
    "The contact with the specified contact details has been archived. The contact must be "
    "un-archived before creating new invoices or credit notes."
)


MSG_NAME_TAKEN = (
    "The contact name {name} is already assigned to another contact. The contact name must be "
    "unique across all active contacts."
)


MSG_NUMBER_TAKEN = (
    "The contact number {number} is already assigned to another contact. The contact number "
    "must be unique across all contacts."
)


_CONTACT_READ_ONLY = {
    "ContactID",
    "IsSupplier",
    "IsCustomer",
    "UpdatedDateUTC",
    "Balances",
    "HasValidationErrors",
    "ValidationErrors",
    "StatusAttributeString",
    "HasAttachments",
    "Website",
    "Discount",
}


CONTACT_SPEC_READ_ONLY = {"Website", "Discount", "UpdatedDateUTC"}  # Contact's readOnly (spec)


class ContactsState(SandboxBase):
    """Contacts of every organisation."""

    def add_contact(self, tenant_id: str, contact: JSON) -> JSON:
        """Seed a contact without spending API calls; raises ValidationFailed like a 400."""
        with self.lock:
            saved, errors = self.save_contact(tenant_id, contact, create_only=True)
            if saved is None:
                raise ValidationFailed(errors)
            return copy.deepcopy(saved)

    def contacts(self, tenant_id: str) -> list[JSON]:
        with self.lock:
            t = self.tenant(tenant_id)
            return copy.deepcopy(self.ordered(t, t.contacts, "ContactID"))

    def find_contact(self, t: Tenant, ref: str) -> JSON | None:
        """By ContactID, else by ContactNumber (what GET /Contacts/{id} accepts)."""
        found = t.contacts.get(ref.lower()) or t.contacts.get(ref)
        if found is not None:
            return found
        return next((c for c in t.contacts.values() if c.get("ContactNumber") == ref), None)

    def save_contact(self, tenant_id: str, submitted: JSON, *, create_only: bool) -> Outcome:
        """Create (PUT) or create-or-update by ContactID (POST) one contact."""
        t = self.tenant(tenant_id)
        existing: JSON | None = None
        contact_id = submitted.get("ContactID")
        if contact_id:
            existing = t.contacts.get(str(contact_id).lower())
            if existing is None:
                return None, [f"The contact with ContactID {contact_id} could not be found."]
            if create_only:
                return None, [f"A contact with ContactID {contact_id} already exists."]
        refused = sorted(k for k in submitted if k in CONTACT_SPEC_READ_ONLY)
        if refused:  # readOnly in the spec: Xero does not take them (FACTS "The 2026 platform")
            return None, [f"{k} is a read-only field and cannot be set" for k in refused]
        merged: JSON = copy.deepcopy(existing) if existing else {}
        for key, value in submitted.items():
            if key not in _CONTACT_READ_ONLY:
                merged[key] = value
        errors = self._contact_errors(t, merged, existing)
        if errors:
            return None, errors
        now = self.clock()
        if existing is None:
            merged = {
                "ContactID": str(uuid.uuid4()),
                "ContactStatus": "ACTIVE",
                "Addresses": [],
                "Phones": [],
                "ContactGroups": [],
                "ContactPersons": [],
                "IsSupplier": False,
                "IsCustomer": False,
                "HasAttachments": False,
                "HasValidationErrors": False,
                **merged,
            }
        merged["Name"] = str(merged["Name"]).strip()
        self._touch(t, merged, "ContactID", now)
        t.contacts[merged["ContactID"]] = merged
        return merged, []

    def _contact_errors(self, t: Tenant, contact: JSON, existing: JSON | None) -> list[str]:
        errors: list[str] = []
        name = str(contact.get("Name") or "").strip()
        own_id = existing["ContactID"] if existing else None
        others = [c for c in t.contacts.values() if c["ContactID"] != own_id]
        if not name:
            errors.append("The contact name must be specified.")
        elif len(name) > 255:
            errors.append("The contact name must not exceed 255 characters.")
        elif contact.get("ContactStatus", "ACTIVE") == "ACTIVE" and any(
            c["ContactStatus"] == "ACTIVE" and c["Name"].lower() == name.lower() for c in others
        ):
            errors.append(MSG_NAME_TAKEN.format(name=name))
        if contact.get("ContactStatus", "ACTIVE") not in ("ACTIVE", "ARCHIVED"):
            errors.append("ContactStatus must be ACTIVE or ARCHIVED.")
        number = contact.get("ContactNumber")
        if number:
            if len(str(number)) > 50:
                errors.append("The contact number must not exceed 50 characters.")
            elif any(c.get("ContactNumber") == number for c in others):
                errors.append(MSG_NUMBER_TAKEN.format(number=number))
        for text_field in ("EmailAddress", "FirstName", "LastName"):
            if len(str(contact.get(text_field) or "")) > 255:
                errors.append(f"The {text_field} must not exceed 255 characters.")
        return errors

    def render_contact(self, t: Tenant, contact: JSON) -> JSON:
        """A copy of the contact with its `Balances`: what is due on its AUTHORISED invoices
        (Overdue: past their DueDate), not converted to the base currency, as Xero reports."""
        out = copy.deepcopy(contact)
        today = _utc(self.clock()).date()
        balances: JSON = {}
        for doc_type, name in (("ACCREC", "AccountsReceivable"), ("ACCPAY", "AccountsPayable")):
            due = [
                i
                for i in t.invoices.values()
                if i["Type"] == doc_type
                and i["Status"] == "AUTHORISED"
                and i["Contact"]["ContactID"] == contact["ContactID"]
            ]
            balances[name] = {
                "Outstanding": sum((i["AmountDue"] for i in due), Decimal("0.00")),
                "Overdue": sum(
                    (i["AmountDue"] for i in due if (parse_day(i.get("DueDate")) or today) < today),
                    Decimal("0.00"),
                ),
            }
        out["Balances"] = balances
        return out
