"""What each kind's element carries from the stage that waits to the handler that writes it: one
pydantic model per batch kind (issue #15.5), built by the stage, read back by the handler.

The wire shape (the JSON kept in the buffer) is the one the buffer always held, so elements
buffered before an upgrade still read; a write-back's Zoho fields are named `update` in code,
since `record` means a record's name in words in every other kind.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Element(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    def wire(self) -> dict[str, Any]:
        """The element as the buffer keeps it (JSON; a bare contact is `{}`)."""
        return self.model_dump(mode="json", by_alias=True, exclude_defaults=True)


class InvoiceElement(_Element):
    """A new invoice: its body, and how to find one an earlier attempt created."""

    record: str  # the Zoho record in words ("Invoices 123"), named in errors
    body: dict[str, Any]  # the XeroInvoiceIn body as sent
    version: str  # the content version it writes (a later edit is applied after it)
    lookup: str | None  # the Xero `where` clause of an earlier create, if it can be found
    suspect: bool  # Xero may hold it already (a retry, a redelivery, a replay): look first
    account_id: str  # the account whose contact link goes if Xero says it is archived
    products: dict[str, str]  # Zoho product id -> item code (links forgotten if Xero refuses)


class CreditNoteElement(_Element):
    """A new credit note against a paid invoice, found again by its unique Reference."""

    record: str
    body: dict[str, Any]  # the XeroCreditNote body as sent
    reference: str
    contact_id: str
    suspect: bool


class ContactElement(_Element):
    """An account to find or create as a Xero contact; bare (no body) when the account already
    waited in the buffer, whose payload is then not read from Zoho again."""

    record: str = ""
    body: dict[str, Any] | None = None  # the XeroContactIn body


class ItemElement(_Element):
    """A product to create as a Xero item (or adopt by its code)."""

    record: str
    body: dict[str, Any]  # the XeroItemIn body


class WriteBackElement(_Element):
    """The fields written back to one Zoho record of `module`."""

    module: str
    update: dict[str, Any] = Field(alias="record")  # Zoho field name -> value
