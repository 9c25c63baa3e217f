"""What the system of record keeps per link kind, and what a batch's flush tells the stages
that waited on it: one pydantic model each (issue #15.5), so a field means one thing wherever it
is read, and money is Decimal.

A link maps a Zoho id to what Xero holds for it (or back, for the reverse kinds), per
connection (workers/store). What is stored is what the dicts always held (`wire`): amounts as
strings, fields at their default left out, other values as schemas/wire.py writes them (the
Decimals of payment feedback's fields as exact numbers), so rows written before this module read
unchanged; a field an older or newer version wrote and this one does not know is kept, not read.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Generic, Self, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer


def _blank_is_none(value: Any) -> Any:
    return None if value == "" else value


# money kept as its exact text ("11.50"), as the links always held it; "" reads as none
Amount = Annotated[
    Decimal | None, BeforeValidator(_blank_is_none), PlainSerializer(str, when_used="unless-none")
]


class Stored(BaseModel):
    """Base of a stored link or a batch outcome: frozen, unknown fields kept."""

    model_config = ConfigDict(frozen=True, extra="allow")

    def wire(self) -> dict[str, Any]:
        """What is kept (links) or sent to the waiting stages (outcomes), for wire.dumps."""
        return self.model_dump(exclude_defaults=True)

    def merged(self, other: Stored) -> Self:
        """This with the fields `other` was given (a dict merge, `{**self, **other}`)."""
        return self.model_copy(
            update={name: getattr(other, name) for name in other.model_fields_set}
        )


class TotalPair(BaseModel):
    """Zoho's and Xero's totals of one invoice, as judged (strings: compared exactly)."""

    model_config = ConfigDict(frozen=True)

    zoho: str
    xero: str


class OurCreditNote(BaseModel):
    """A credit note this integration raised against the invoice (tasks/credit_notes.py)."""

    model_config = ConfigDict(frozen=True)

    CreditNoteID: str
    CreditNoteNumber: str | None = None
    element: str  # the batch element id it was created under (`{link id}@{version}`)
    allocate: Annotated[Decimal, PlainSerializer(str)]  # what of it goes to the invoice
    allocated: bool
    text: str  # what the Zoho record is told


class InvoiceLink(Stored):
    """Kind `invoice`, `Module:record id` -> the Xero ACCREC invoice of that Zoho document."""

    InvoiceID: str
    InvoiceNumber: str | None = None
    Status: str | None = None
    Total: Amount = None
    Reference: str | None = None  # the Zoho number (the accountant's export)
    version: str | None = None  # the content version last written (None: adopted)
    total_differs: TotalPair | None = None  # Xero's total differs from Zoho's
    accepted_total: TotalPair | None = None  # an operator accepted this difference
    credited: dict[str, list[str]] | None = None  # our credit notes: "account|tax" -> amounts
    LineAmountTypes: str | None = None
    credit_notes: list[OurCreditNote] = []
    sent_by: str | None = None  # "xero", "zoho", "backfill" or "adopted": sent once
    online_url: str | None = None


class ContactLink(Stored):
    """Kinds `contact` (Zoho account id) and `vendor` (Zoho vendor id) -> the Xero contact."""

    ContactID: str
    Name: str | None = None


class ItemLink(Stored):
    """Kind `item`, Zoho product id -> the Xero item of its code."""

    Code: str
    ItemID: str | None = None
    Name: str | None = None


class PurchaseOrderLink(Stored):
    """Kind `purchase_order`, Zoho record id -> the Xero purchase order."""

    PurchaseOrderID: str
    PurchaseOrderNumber: str | None = None
    Status: str | None = None
    version: str | None = None


class PurchaseOrderRecord(Stored):
    """Kind `purchase_order_xero`, Xero PurchaseOrderID -> its Zoho record (status polls)."""

    record_id: str


class CreditNoteLink(Stored):
    """Kind `credit_note`, batch element id -> the credit note Xero created for it."""

    CreditNoteID: str
    CreditNoteNumber: str | None = None
    Total: Amount = None


class InvoiceRecord(Stored):
    """Kind `invoice_xero`, Xero InvoiceID -> its Zoho record (payment feedback's way back)."""

    module: str
    record_id: str
    account_id: str


class ContactAccount(Stored):
    """Kind `payment_contact`, Xero ContactID -> the Zoho account (contact sync's way back)."""

    account_id: str


class InvoiceFed(Stored):
    """Kind `payment_invoice`, Xero InvoiceID -> what payment feedback last wrote to Zoho."""

    mark: str  # the invoice's UpdatedDateUTC it was read at (ISO 8601)
    fields: dict[str, Any]


class AccountFed(Stored):
    """Kind `payment_account`, Zoho account id -> the balances payment feedback last wrote."""

    mark: float  # when the balances were read (epoch seconds)
    fields: dict[str, Any]


L = TypeVar("L", bound=Stored)


@dataclass(frozen=True)
class LinkKind(Generic[L]):
    """A kind of link: its name in the store and the model of its values."""

    name: str
    model: type[L]

    def parse(self, raw: dict[str, Any]) -> L:
        return self.model.model_validate(raw)


INVOICE = LinkKind("invoice", InvoiceLink)
CONTACT = LinkKind("contact", ContactLink)
VENDOR = LinkKind("vendor", ContactLink)
ITEM = LinkKind("item", ItemLink)
PURCHASE_ORDER = LinkKind("purchase_order", PurchaseOrderLink)
PURCHASE_ORDER_XERO = LinkKind("purchase_order_xero", PurchaseOrderRecord)
CREDIT_NOTE = LinkKind("credit_note", CreditNoteLink)
INVOICE_XERO = LinkKind("invoice_xero", InvoiceRecord)
PAYMENT_CONTACT = LinkKind("payment_contact", ContactAccount)
PAYMENT_INVOICE = LinkKind("payment_invoice", InvoiceFed)
PAYMENT_ACCOUNT = LinkKind("payment_account", AccountFed)
KINDS = {
    kind.name: kind
    for kind in (
        INVOICE,
        CONTACT,
        VENDOR,
        ITEM,
        PURCHASE_ORDER,
        PURCHASE_ORDER_XERO,
        CREDIT_NOTE,
        INVOICE_XERO,
        PAYMENT_CONTACT,
        PAYMENT_INVOICE,
        PAYMENT_ACCOUNT,
    )
}


# -- what a flush tells the stages that waited (workers/batching `Results`) ---------------------


class InvoiceOutcome(Stored):
    """An invoice the flush created or adopted: Xero's total, and the content it wrote (a
    waiter that read a later edit applies it after the create)."""

    action: str  # "created" or "adopted"
    Total: Amount = None
    version: str | None  # always sent: None (an adopted link's) is not "the same content"


class CreditNoteOutcome(CreditNoteLink):
    action: str  # "created" or "adopted"


class ContactOutcome(Stored):
    """The account's contact, with a note for the history when it was adopted by name or
    created under another name; empty when the batch had no details for the account."""

    ContactID: str | None = None
    Name: str | None = None
    note: str | None = None


class ItemOutcome(ItemLink):
    note: str | None = None  # adopted by code, though the names differ


class WrittenBack(Stored):
    written: bool
