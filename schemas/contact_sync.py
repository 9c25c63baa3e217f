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

from pydantic import BaseModel, ConfigDict, Field

from schemas.xero import XeroContact

CONTACT_TASK = "zxsync.contact_sync"
MAX_CONTACTS_PER_JOB = 100


class ContactSyncJob(BaseModel):
    """Xero contacts of one connection whose changes should reach their Zoho accounts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    connection: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    contact_ids: list[str] = Field(min_length=1, max_length=MAX_CONTACTS_PER_JOB)
    event_id: str = Field(min_length=1, max_length=128)


def xero_values(contact: XeroContact) -> dict[str, str]:
    """The contact's syncable values: its POBOX (billing) address, else its first address; its
    DEFAULT phone as one string; e-mail and tax number. Absent values are empty strings."""
    address = next((a for a in contact.Addresses if a.AddressType == "POBOX"), None) or next(
        iter(contact.Addresses), None
    )
    phone = next((p for p in contact.Phones if p.PhoneType == "DEFAULT"), None)
    number = " ".join(
        part for part in (
            phone.PhoneCountryCode, phone.PhoneAreaCode, phone.PhoneNumber
        ) if part
    ) if phone else ""
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


def _when(value: Any) -> datetime | None:
    """Zoho's Modified_Time (ISO 8601 with its offset); a naive time is taken as UTC."""
    when = value if isinstance(value, datetime) else (
        datetime.fromisoformat(value) if isinstance(value, str) and value else None
    )
    return when.replace(tzinfo=UTC) if when is not None and when.tzinfo is None else when
