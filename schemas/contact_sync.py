"""Contact sync, Xero -> Zoho (issue 18.3): the job the relay enqueues and the pure decisions.

With `contact_sync: "both"` a Xero CONTACT event updates the linked Zoho account's mapped fields
(`contact_fields`: Xero field -> Zoho field). Rules, all pure so they are unit-tested:
- only a linked account is updated, never a contact or account created by a contact event;
- latest change wins: Xero's values are written only when the contact's UpdatedDateUTC is later
  than the account's Modified_Time (a Zoho edit made since is not overwritten);
- no loops: only fields that differ are written, so the event of our own write (Xero echoing a
  value Zoho already holds) writes nothing, and write-backs carry `"trigger": []`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.xero import XeroContact

CONTACT_TASK = "zxsync.contact_sync"
MAX_CONTACTS_PER_JOB = 100


class ContactSyncJob(BaseModel):
    """Xero contacts whose changes should reach their Zoho accounts (CONTACT events), or Zoho
    accounts whose changes should reach their Xero contacts (Accounts events), of one
    connection."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    connection: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    contact_ids: list[str] = Field(default_factory=list, max_length=MAX_CONTACTS_PER_JOB)
    account_ids: list[str] = Field(default_factory=list, max_length=MAX_CONTACTS_PER_JOB)
    event_id: str = Field(min_length=1, max_length=128)

    @model_validator(mode="after")
    def _something(self) -> ContactSyncJob:
        if not self.contact_ids and not self.account_ids:
            raise ValueError("contact_ids or account_ids must name at least one record")
        return self


def xero_values(contact: XeroContact) -> dict[str, str]:
    """The contact's syncable values: its POBOX (billing) address, else its first address; its
    DEFAULT phone as one string; e-mail and tax number. Absent values are empty strings."""
    address = next((a for a in contact.Addresses if a.AddressType == "POBOX"), None) or next(
        iter(contact.Addresses), None
    )
    phone = next((p for p in contact.Phones if p.PhoneType == "DEFAULT"), None)
    number = (
        " ".join(
            part
            for part in (phone.PhoneCountryCode, phone.PhoneAreaCode, phone.PhoneNumber)
            if part
        )
        if phone
        else ""
    )
    values = {
        "AddressLine1": address.AddressLine1 if address else None,
        "City": address.City if address else None,
        "Region": address.Region if address else None,
        "PostalCode": address.PostalCode if address else None,
        "Country": address.Country if address else None,
        "Phone": number,
        "EmailAddress": contact.EmailAddress,
        "TaxNumber": contact.TaxNumber,
    }
    return {k: (v or "").strip() for k, v in values.items()}


def zoho_update(
    contact: XeroContact,
    account: dict[str, Any],
    field_map: dict[str, str],
) -> tuple[dict[str, Any] | None, str]:
    """The Zoho account update for this Xero contact (None: nothing to write) and why."""
    zoho_modified = _when(account.get("Modified_Time"))
    if contact.UpdatedDateUTC and zoho_modified and zoho_modified > contact.UpdatedDateUTC:
        return None, "the Zoho account changed later: latest change wins"
    values = xero_values(contact)
    changed = {
        zoho_field: values[xero_field]
        for xero_field, zoho_field in field_map.items()
        if xero_field in values and (account.get(zoho_field) or "") != values[xero_field]
    }
    if not changed:
        return None, "the Zoho account already holds these values (or our own write's echo)"
    return {"id": account["id"], **changed}, f"updated {', '.join(sorted(changed))}"


ADDRESS_FIELDS = ("AddressLine1", "City", "Region", "PostalCode", "Country")


def xero_update(
    contact: XeroContact, account: dict[str, Any], field_map: dict[str, str]
) -> tuple[dict[str, Any] | None, str]:
    """The Xero contact update (POST Contacts/{id} body) for this Zoho account's mapped fields
    (None: nothing to write) and why; the mirror of `zoho_update`."""
    zoho_modified = _when(account.get("Modified_Time"))
    if contact.UpdatedDateUTC and zoho_modified and contact.UpdatedDateUTC > zoho_modified:
        return None, "the Xero contact changed later: latest change wins"
    held = xero_values(contact)
    wanted = {
        xero_field: str(account.get(zoho_field) or "").strip()
        for xero_field, zoho_field in field_map.items()
    }
    changed = sorted(k for k, v in wanted.items() if held.get(k, "") != v)
    if not changed:
        return None, "the Xero contact already holds these values (or our own write's echo)"
    body: dict[str, Any] = {"ContactID": contact.ContactID}
    for key in ("EmailAddress", "TaxNumber"):
        if key in changed:
            body[key] = wanted[key]
    if any(k in changed for k in ADDRESS_FIELDS):
        merged = {**held, **wanted}
        body["Addresses"] = [{"AddressType": "POBOX", **{k: merged[k] for k in ADDRESS_FIELDS}}]
    if "Phone" in changed:  # one string in Zoho: Xero's country and area codes are cleared
        body["Phones"] = [
            {
                "PhoneType": "DEFAULT",
                "PhoneNumber": wanted["Phone"],
                "PhoneAreaCode": "",
                "PhoneCountryCode": "",
            }
        ]
    return body, f"updated {', '.join(changed)}"


def _when(value: Any) -> datetime | None:
    """Zoho's Modified_Time (ISO 8601 with its offset); a naive time is taken as UTC."""
    when = (
        value
        if isinstance(value, datetime)
        else (datetime.fromisoformat(value) if isinstance(value, str) and value else None)
    )
    return when.replace(tzinfo=UTC) if when is not None and when.tzinfo is None else when
