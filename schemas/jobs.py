"""The job contract for relays, and the message that carries a job from stage to stage.

Relays send `SyncJob` (published as JSON Schema in schemas/job.schema.json); every stage task
receives and returns a `StageMessage`, so stages share nothing but these messages. A stage that
relies on what an earlier one found takes a narrowed message (`SaleToSync`, `ContactedSale`,
`FetchedPurchase`, `ContactedPurchase`, or a union such as `ToContact` with the cancel case):
the same JSON, with those fields required, so a message that lacks one fails its parse naming
the field (workers/stage.py dead-letters it as a contract error) instead of an assert.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from schemas.zoho import (
    Module,
    ZohoAccount,
    ZohoContact,
    ZohoInventoryDocument,
    ZohoProduct,
    ZohoPurchaseOrder,
    ZohoSalesDocument,
)

JOB_SCHEMA_PATH = Path(__file__).with_name("job.schema.json")

Event = Literal["insert", "update", "delete", "approve", "replay"]
#: event ids of `zxsync backfill`'s jobs: they go at the lowest priority and are not e-mailed
BACKFILL_EVENT_PREFIX = "backfill-"


class SyncJob(BaseModel):
    """What a relay enqueues: ids only; the worker reads the record from Zoho itself."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="SyncJob")

    connection: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="Name of a configured connection (one Zoho org + one Xero tenant).",
    )
    module: Module = Field(description="Zoho CRM module API name of the record.")
    record_id: str = Field(
        pattern=r"^[0-9]{1,30}$", description="Zoho CRM record id (numeric string)."
    )
    event: Event = Field(description="What happened to the record in Zoho.")
    event_id: str = Field(
        min_length=1,
        max_length=128,
        description="Unique id of this event at the relay; repeats are ignored.",
    )
    occurred_at: datetime | None = Field(None, description="When Zoho saw the change (ISO 8601).")


def is_backfill(job: SyncJob) -> bool:
    """Whether the job brings history across (`zxsync backfill`) rather than a live change."""
    return job.event_id.startswith(BACKFILL_EVENT_PREFIX)


class StageMessage(BaseModel):
    """A job plus what earlier stages learned; passed from one stage task to the next."""

    model_config = ConfigDict(extra="forbid")

    job: SyncJob
    received_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    document: ZohoSalesDocument | None = None
    account: ZohoAccount | None = None
    contact_person: ZohoContact | None = None
    products: list[ZohoProduct] = Field(default_factory=list)
    content_version: str | None = None
    xero_contact_id: str | None = None
    xero_invoice_id: str | None = None
    xero_invoice_number: str | None = None
    xero_invoice_status: str | None = None
    xero_action: (
        Literal["created", "adopted", "unchanged", "updated", "voided", "deleted"] | None
    ) = None
    intent: Literal["sync", "cancel"] = "sync"
    converted_from: str | None = Field(
        None, description="Link key (module:id) of the quote/sales order this was converted from"
    )
    xero_online_invoice_url: str | None = None
    xero_credit_note: str | None = Field(
        None, description="What a credit note did for a cancel or reduction after payment"
    )
    skipped_reason: str | None = None
    purchase_order: ZohoPurchaseOrder | None = None
    xero_purchase_order_id: str | None = None
    xero_purchase_order_number: str | None = None
    xero_purchase_order_status: str | None = None

    def inventory_document(self) -> ZohoInventoryDocument | None:
        """The Zoho document whose lines this job syncs: a sales document or a purchase order."""
        return self.document or self.purchase_order


class SaleToSync(StageMessage):
    """fetch_record read the sales document and means to sync it."""

    intent: Literal["sync"] = "sync"
    document: ZohoSalesDocument


class ContactedSale(SaleToSync):
    """... and contact_precheck found or made the account's Xero contact."""

    xero_contact_id: str = Field(min_length=1)


class SaleToCancel(StageMessage):
    """fetch_record means to void or delete the linked Xero invoice; the Zoho record may be
    gone (a delete event), so there may be no document."""

    intent: Literal["cancel"]


class FetchedPurchase(StageMessage):
    """fetch_record read the purchase order."""

    purchase_order: ZohoPurchaseOrder


class ContactedPurchase(FetchedPurchase):
    """... and vendor_precheck found or made the vendor's Xero contact."""

    xero_contact_id: str = Field(min_length=1)


def route(message: Any) -> str:
    """Which narrowed message a stage message is (its tag in the unions below): a cancel, a
    purchase order or a sale. Reads JSON (the wire) and models alike."""
    if isinstance(message, dict):
        intent, job = message.get("intent", "sync"), message.get("job")
    else:
        intent, job = getattr(message, "intent", "sync"), getattr(message, "job", None)
    if intent == "cancel":
        return "cancel"
    module = job.get("module") if isinstance(job, dict) else getattr(job, "module", None)
    return "purchase" if module == "Purchase_Orders" else "sale"


#: what contact_precheck takes: a sale to sync, or a cancel (which needs only the link)
ToContact = Annotated[
    Annotated[SaleToSync, Tag("sale")] | Annotated[SaleToCancel, Tag("cancel")],
    Discriminator(route),
]
#: what item_precheck takes: either chain's fetched document, or a cancel
ToPrice = Annotated[
    Annotated[SaleToSync, Tag("sale")]
    | Annotated[FetchedPurchase, Tag("purchase")]
    | Annotated[SaleToCancel, Tag("cancel")],
    Discriminator(route),
]
#: what invoice_create takes: a contacted sale to create or update, or a cancel
ToInvoice = Annotated[
    Annotated[ContactedSale, Tag("sale")] | Annotated[SaleToCancel, Tag("cancel")],
    Discriminator(route),
]


def job_json_schema() -> str:
    """The relay contract as JSON Schema text (the committed file is checked against it)."""
    return json.dumps(SyncJob.model_json_schema(), indent=2, sort_keys=True) + "\n"
