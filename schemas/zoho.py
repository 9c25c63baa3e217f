"""Pydantic models of the Zoho CRM records the integration reads and the fields it writes.

Field names follow Zoho CRM's API names (FACTS.md §5): models use snake_case attributes with the
API name as alias, so a record read from Zoho validates as-is and errors name the Zoho field.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Literal, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from schemas.errors import InvalidRecord
from schemas.money import ZERO

SalesModule = Literal["Quotes", "Sales_Orders", "Invoices"]
Module = Literal["Quotes", "Sales_Orders", "Invoices", "Purchase_Orders"]


class ZohoModel(BaseModel):
    """Base for Zoho records: accept by API name, ignore the many fields we do not use."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


class ZohoLookup(ZohoModel):
    """A lookup field value: `{"id": ..., "name": ...}`."""

    id: str
    name: str | None = None


class ZohoLineTax(ZohoModel):
    """One tax applied to a line: Zoho states the percentage and its own computed value."""

    name: str
    percentage: Decimal
    value: Decimal = ZERO


class ZohoLineItem(ZohoModel):
    """A row of the Invoiced_Items / Quoted_Items / Ordered_Items subform."""

    id: str | None = None
    product: ZohoLookup = Field(alias="Product_Name")
    description: str | None = Field(None, alias="Description")
    quantity: Decimal = Field(alias="Quantity")
    list_price: Decimal = Field(alias="List_Price")
    discount: Decimal = Field(ZERO, alias="Discount")
    line_taxes: list[ZohoLineTax] = Field(default_factory=list, alias="Line_Tax")
    tax: Decimal = Field(ZERO, alias="Tax")
    net_total: Decimal | None = Field(None, alias="Net_Total")


class ZohoInventoryDocument(ZohoModel):
    """What every Zoho inventory record shares: lines, totals, currency and status (§5)."""

    id: str
    subject: str | None = Field(None, alias="Subject")
    status: str | None = Field(
        None, validation_alias=AliasChoices("Quote_Stage", "Status")
    )  # quotes move through Quote_Stage, the other modules through Status
    contact: ZohoLookup | None = Field(None, alias="Contact_Name")
    currency: str | None = Field(None, alias="Currency")
    exchange_rate: Decimal | None = Field(None, alias="Exchange_Rate")
    items: list[ZohoLineItem] = Field(
        validation_alias=AliasChoices(
            "Invoiced_Items", "Ordered_Items", "Quoted_Items", "Purchase_Items", "Product_Details"
        ),
        min_length=1,
    )
    sub_total: Decimal = Field(alias="Sub_Total")
    discount: Decimal = Field(ZERO, alias="Discount")
    tax: Decimal = Field(ZERO, alias="Tax")
    adjustment: Decimal = Field(ZERO, alias="Adjustment")
    grand_total: Decimal = Field(alias="Grand_Total")
    modified_time: datetime | None = Field(None, alias="Modified_Time")


class ZohoSalesDocument(ZohoInventoryDocument):
    """A Zoho quote, sales order or invoice: the source of one Xero ACCREC invoice."""

    number: str | None = Field(
        None, validation_alias=AliasChoices("Invoice_Number", "SO_Number", "Quote_Number")
    )
    account: ZohoLookup = Field(alias="Account_Name")
    document_date: date | None = Field(
        None, validation_alias=AliasChoices("Invoice_Date", "Quote_Date", "SO_Date")
    )
    due_date: date | None = Field(None, validation_alias=AliasChoices("Due_Date", "Valid_Till"))
    sales_order: ZohoLookup | None = Field(None, alias="Sales_Order")
    quote: ZohoLookup | None = Field(None, alias="Quote_Name")


class ZohoPurchaseOrder(ZohoInventoryDocument):
    """A Zoho purchase order: the source of one Xero purchase order."""

    number: str | None = Field(None, alias="PO_Number")
    vendor: ZohoLookup = Field(alias="Vendor_Name")
    document_date: date | None = Field(None, alias="PO_Date")
    delivery_date: date | None = Field(None, alias="Due_Date")
    shipping_street: str | None = Field(None, alias="Shipping_Street")
    shipping_city: str | None = Field(None, alias="Shipping_City")
    shipping_state: str | None = Field(None, alias="Shipping_State")
    shipping_code: str | None = Field(None, alias="Shipping_Code")
    shipping_country: str | None = Field(None, alias="Shipping_Country")


class ZohoAccount(ZohoModel):
    """A Zoho account: becomes the Xero customer contact."""

    id: str
    name: str = Field(alias="Account_Name", min_length=1)
    phone: str | None = Field(None, alias="Phone")
    website: str | None = Field(None, alias="Website")
    billing_street: str | None = Field(None, alias="Billing_Street")
    billing_city: str | None = Field(None, alias="Billing_City")
    billing_state: str | None = Field(None, alias="Billing_State")
    billing_code: str | None = Field(None, alias="Billing_Code")
    billing_country: str | None = Field(None, alias="Billing_Country")
    xero_contact_id: str | None = Field(None, alias="Xero_Contact_ID")


class ZohoVendor(ZohoModel):
    """A Zoho vendor: becomes the Xero contact a purchase order is raised to."""

    id: str
    name: str = Field(alias="Vendor_Name", min_length=1)
    email: str | None = Field(None, alias="Email")
    phone: str | None = Field(None, alias="Phone")
    website: str | None = Field(None, alias="Website")
    street: str | None = Field(None, alias="Street")
    city: str | None = Field(None, alias="City")
    state: str | None = Field(None, alias="State")
    zip_code: str | None = Field(None, alias="Zip_Code")
    country: str | None = Field(None, alias="Country")
    xero_contact_id: str | None = Field(None, alias="Xero_Contact_ID")


class ZohoContact(ZohoModel):
    """A Zoho contact person: gives the Xero contact its e-mail and names."""

    id: str
    first_name: str | None = Field(None, alias="First_Name")
    last_name: str | None = Field(None, alias="Last_Name")
    email: str | None = Field(None, alias="Email")


class ZohoProduct(ZohoModel):
    """A Zoho product: becomes a Xero item keyed by its code."""

    id: str
    name: str = Field(alias="Product_Name", min_length=1)
    code: str | None = Field(None, alias="Product_Code")
    unit_price: Decimal | None = Field(None, alias="Unit_Price")
    description: str | None = Field(None, alias="Description")


SyncStatus = Literal["Pending", "Synced", "Failed"]


class ZohoInvoiceWriteBack(ZohoModel):
    """What the integration writes back to the Zoho document once Xero answered.

    These are custom fields the org creates (README: "Zoho setup"); only set fields are sent.
    """

    id: str
    xero_invoice_id: str | None = Field(None, alias="Xero_Invoice_ID")
    xero_invoice_number: str | None = Field(None, alias="Xero_Invoice_Number")
    xero_invoice_status: str | None = Field(None, alias="Xero_Invoice_Status")
    sync_status: SyncStatus | None = Field(None, alias="Xero_Sync_Status")
    sync_error: str | None = Field(None, alias="Xero_Sync_Error")
    online_invoice_url: str | None = Field(None, alias="Xero_Online_Invoice_URL")
    credit_note: str | None = Field(None, alias="Xero_Credit_Note")


class ZohoPurchaseOrderWriteBack(ZohoModel):
    """What the integration writes back to a Zoho purchase order (custom fields, README)."""

    id: str
    xero_purchase_order_id: str | None = Field(None, alias="Xero_Purchase_Order_ID")
    xero_purchase_order_number: str | None = Field(None, alias="Xero_Purchase_Order_Number")
    xero_po_status: str | None = Field(None, alias="Xero_PO_Status")
    sync_status: SyncStatus | None = Field(None, alias="Xero_Sync_Status")
    sync_error: str | None = Field(None, alias="Xero_Sync_Error")


M = TypeVar("M", bound=ZohoModel)


def parse_record(model: type[M], module: str, raw: dict[str, object]) -> M:
    """Validate a Zoho record, turning pydantic's error into one naming the record and field."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "record"
        record = f"{module} {raw.get('id', '?')}"
        raise InvalidRecord(
            record, field, first["msg"], hint="Fix the field in Zoho, then replay."
        ) from None
