"""Pydantic models of the Xero Accounting API bodies we send and the answers we read.

Attribute names are Xero's own (PascalCase) so a dump is the request body; request models
forbid unknown fields so a typo fails here, not at Xero. Shapes follow Xero's official OpenAPI
spec of the Accounting API (xero_accounting.yaml, from XeroAPI/Xero-OpenAPI; checked by
tests/test_xero_spec.py when a copy is at hand).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

XeroDate = Annotated[date, PlainSerializer(lambda value: value.isoformat(), return_type=str)]


def parse_ms_date(value: object) -> object:
    """Xero's WCF date `/Date(1700000000000+0000)/` as an aware datetime; other values as-is."""
    if isinstance(value, str) and value.startswith("/Date("):
        millis = int(value[6:].split("+")[0].split(")")[0])
        return datetime.fromtimestamp(millis / 1000, UTC)
    return value


XeroDateTime = Annotated[datetime, BeforeValidator(parse_ms_date)]
LineAmountTypes = Literal["Exclusive", "Inclusive", "NoTax"]
InvoiceStatus = Literal["DRAFT", "SUBMITTED", "AUTHORISED", "PAID", "VOIDED", "DELETED"]
PurchaseOrderStatus = Literal["DRAFT", "SUBMITTED", "AUTHORISED", "BILLED", "DELETED"]


class XeroRequest(BaseModel):
    """Base of request bodies: exact field names, nothing unknown, no None on the wire."""

    model_config = ConfigDict(extra="forbid")

    def body(self) -> dict[str, Any]:
        """The element as Xero expects it (Decimals kept exact; see schemas.wire)."""
        return self.model_dump(exclude_none=True)


class XeroAddress(XeroRequest):
    AddressType: Literal["POBOX", "STREET"] = "POBOX"
    AddressLine1: str | None = None
    City: str | None = None
    Region: str | None = None
    PostalCode: str | None = None
    Country: str | None = None


class XeroPhone(XeroRequest):
    PhoneType: Literal["DEFAULT", "DDI", "MOBILE", "FAX"] = "DEFAULT"
    PhoneNumber: str


class XeroContactIn(XeroRequest):
    """A customer or supplier to create; ContactNumber carries the Zoho id (our match key)."""

    Name: str = Field(max_length=255)
    ContactNumber: str = Field(max_length=50)
    FirstName: str | None = Field(None, max_length=255)
    LastName: str | None = Field(None, max_length=255)
    EmailAddress: str | None = Field(None, max_length=255)
    # no Website: the spec marks it readOnly and Xero refuses or drops it (FACTS 2026)
    Addresses: list[XeroAddress] | None = None
    Phones: list[XeroPhone] | None = None


class XeroItemDetails(XeroRequest):
    UnitPrice: Decimal | None = None
    AccountCode: str | None = None
    TaxType: str | None = None


class XeroItemIn(XeroRequest):
    """An item to create, keyed by its Code (the Zoho Product_Code)."""

    Code: str = Field(max_length=30)
    Name: str = Field(max_length=50)
    Description: str | None = Field(None, max_length=4000)
    IsSold: bool = True
    SalesDetails: XeroItemDetails | None = None
    IsPurchased: bool | None = None
    PurchaseDetails: XeroItemDetails | None = None


class XeroContactRef(XeroRequest):
    ContactID: str


class XeroTracking(XeroRequest):
    """A tracking category option on a line (validated at start-up against the organisation)."""

    Name: str
    Option: str


class XeroLineItemIn(XeroRequest):
    """One invoice line; TaxAmount is only sent where Xero's own figure would differ."""

    Description: str
    Quantity: Decimal
    UnitAmount: Decimal
    ItemCode: str | None = None
    AccountCode: str | None = None
    TaxType: str | None = None
    TaxAmount: Decimal | None = None
    DiscountAmount: Decimal | None = None
    DiscountRate: Decimal | None = None
    Tracking: list[XeroTracking] | None = None


class XeroInvoiceIn(XeroRequest):
    """An ACCREC invoice to create or (with its InvoiceID) to update."""

    Type: Literal["ACCREC"] = "ACCREC"
    Contact: XeroContactRef
    LineItems: list[XeroLineItemIn] = Field(min_length=1)
    Date: XeroDate | None = None
    DueDate: XeroDate | None = None
    LineAmountTypes: LineAmountTypes = "Exclusive"
    InvoiceNumber: str | None = Field(None, max_length=255)
    Reference: str | None = None
    CurrencyCode: str | None = None
    CurrencyRate: Decimal | None = None
    BrandingThemeID: str | None = None
    Status: Literal["DRAFT", "SUBMITTED", "AUTHORISED"] = "AUTHORISED"


class XeroInvoiceStatusChange(XeroRequest):
    """Void an AUTHORISED invoice or delete a DRAFT/SUBMITTED one."""

    InvoiceID: str
    Status: Literal["VOIDED", "DELETED"]


class XeroPurchaseOrderIn(XeroRequest):
    """A purchase order to create or update; the contact must already exist in Xero."""

    Contact: XeroContactRef
    LineItems: list[XeroLineItemIn] = Field(min_length=1)
    Date: XeroDate | None = None
    DeliveryDate: XeroDate | None = None
    LineAmountTypes: LineAmountTypes = "Exclusive"
    Reference: str | None = None
    CurrencyCode: str | None = None
    CurrencyRate: Decimal | None = None
    DeliveryAddress: str | None = None
    Status: Literal["DRAFT", "SUBMITTED", "AUTHORISED"] = "AUTHORISED"


class XeroResponse(BaseModel):
    """Base of answers: read what we use, ignore the rest."""

    model_config = ConfigDict(extra="ignore")


class XeroValidationError(XeroResponse):
    Message: str


class XeroBalance(XeroResponse):
    Outstanding: Decimal = Decimal(0)
    Overdue: Decimal = Decimal(0)


class XeroBalances(XeroResponse):
    """A contact's raw balances; changes to them do not move UpdatedDateUTC (FACTS)."""

    AccountsReceivable: XeroBalance = XeroBalance()
    AccountsPayable: XeroBalance = XeroBalance()


class XeroContactAddress(XeroResponse):
    AddressType: str | None = None
    AddressLine1: str | None = None
    City: str | None = None
    Region: str | None = None
    PostalCode: str | None = None
    Country: str | None = None


class XeroContactPhone(XeroResponse):
    PhoneType: str | None = None
    PhoneNumber: str | None = None
    PhoneAreaCode: str | None = None
    PhoneCountryCode: str | None = None


class XeroContact(XeroResponse):
    ContactID: str
    Name: str = ""  # optional in the spec (a contact inside another document may lack it)
    ContactNumber: str | None = None
    ContactStatus: str | None = None
    Balances: XeroBalances | None = None
    EmailAddress: str | None = None
    TaxNumber: str | None = None
    Addresses: list[XeroContactAddress] = []
    Phones: list[XeroContactPhone] = []
    UpdatedDateUTC: XeroDateTime | None = None


class XeroPayment(XeroResponse):
    """Every field is optional in the spec: a payment without a date is no "last payment"."""

    PaymentID: str | None = None
    Date: XeroDateTime | None = None
    Amount: Decimal | None = None


class XeroInvoiceLine(XeroResponse):
    """A line as Xero holds it: what a credit note for part of the invoice is built from."""

    Description: str | None = None
    AccountCode: str | None = None
    TaxType: str | None = None
    LineAmount: Decimal = Decimal(0)
    TaxAmount: Decimal = Decimal(0)


class XeroAppliedCredit(XeroResponse):
    """A credit note as an invoice lists it: how much of it went to this invoice."""

    CreditNoteID: str
    AppliedAmount: Decimal = Decimal(0)


class XeroInvoiceRef(XeroResponse):
    InvoiceID: str
    InvoiceNumber: str | None = None


class XeroAllocation(XeroResponse):
    """The spec requires Amount, Invoice and Date when one is sent; read leniently."""

    Amount: Decimal | None = None
    Invoice: XeroInvoiceRef | None = None


class XeroCreditNote(XeroResponse):
    CreditNoteID: str
    CreditNoteNumber: str | None = None
    Reference: str | None = None
    Type: str | None = None
    Status: str | None = None
    Total: Decimal | None = None
    RemainingCredit: Decimal = Decimal(0)
    Contact: XeroContact | None = None
    Allocations: list[XeroAllocation] = []
    UpdatedDateUTC: XeroDateTime | None = None


class XeroPrepaid(XeroResponse):
    """An overpayment or prepayment: money received, its RemainingCredit the customer's."""

    Type: str | None = None
    Status: str | None = None
    RemainingCredit: Decimal = Decimal(0)
    Contact: XeroContact | None = None
    UpdatedDateUTC: XeroDateTime | None = None


class XeroItem(XeroResponse):
    ItemID: str
    Code: str
    Name: str | None = None


class XeroInvoice(XeroResponse):
    InvoiceID: str
    InvoiceNumber: str | None = None
    Reference: str | None = None
    Status: InvoiceStatus
    Total: Decimal
    SubTotal: Decimal | None = None
    TotalTax: Decimal | None = None
    AmountDue: Decimal | None = None
    SentToContact: bool | None = None
    Type: str | None = None
    Contact: XeroContact | None = None
    AmountPaid: Decimal = Decimal(0)
    AmountCredited: Decimal = Decimal(0)
    FullyPaidOnDate: XeroDateTime | None = None
    Payments: list[XeroPayment] = []
    UpdatedDateUTC: XeroDateTime | None = None
    LineItems: list[XeroInvoiceLine] = []
    CreditNotes: list[XeroAppliedCredit] = []
    CurrencyCode: str | None = None
    LineAmountTypes: str | None = None


class XeroPurchaseOrder(XeroResponse):
    PurchaseOrderID: str
    PurchaseOrderNumber: str | None = None
    Reference: str | None = None
    Status: PurchaseOrderStatus
    Total: Decimal
    Contact: XeroContact | None = None
    UpdatedDateUTC: XeroDateTime | None = None


class XeroTaxRate(XeroResponse):
    TaxType: str
    Name: str
    EffectiveRate: Decimal
    Status: str = "ACTIVE"


class XeroTrackingOption(XeroResponse):
    Name: str
    Status: str = "ACTIVE"


class XeroTrackingCategory(XeroResponse):
    Name: str
    Status: str = "ACTIVE"
    Options: list[XeroTrackingOption] = []


class XeroAccount(XeroResponse):
    Code: str | None = None
    Name: str
    Type: str
    Status: str = "ACTIVE"
