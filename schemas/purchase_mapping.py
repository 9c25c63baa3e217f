"""Pure Zoho purchase order -> Xero purchase order mapping, on the sales mapping's own rules.

The money promise is the one in schemas/mapping.py (Xero's Total equals Zoho's Grand_Total, or a
TotalMismatch naming both): lines, record-level discount and adjustment, and the total
reconciliation are the same functions. Only the account, the tax names and the discount style
differ (`purchase_rules`), and the contact is a Zoho vendor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from schemas.connection import Connection
from schemas.errors import InvalidRecord
from schemas.mapping import (
    LineRules,
    addresses,
    currency_rate,
    fingerprint,
    map_line,
    reconcile_total,
    record_level_lines,
    xero_total,
)
from schemas.xero import (
    XeroAddress,
    XeroContactIn,
    XeroContactRef,
    XeroPhone,
    XeroPurchaseOrderIn,
)
from schemas.zoho import ZohoProduct, ZohoPurchaseOrder, ZohoVendor


@dataclass(frozen=True)
class MappedPurchaseOrder:
    """A Xero purchase order body plus what Xero will total and the decisions taken."""

    purchase_order: XeroPurchaseOrderIn
    xero_total: Decimal
    decisions: list[str] = field(default_factory=list)

    @property
    def content_version(self) -> str:
        """Fingerprint of the body: equal bodies give equal idempotency keys."""
        return fingerprint(self.purchase_order.body())


def purchase_rules(conn: Connection) -> LineRules:
    """Purchase lines: the purchase account and TaxTypes; Xero takes only DiscountRate here."""
    return LineRules(
        conn.purchase_account_code,
        conn.purchase_tax_types,
        conn.purchase_default_tax_type,
        discount_as_rate=True,
    )


def contact_from_vendor(vendor: ZohoVendor) -> XeroContactIn:
    """A Xero contact for a Zoho vendor; ContactNumber = Zoho id is the durable match key."""
    address = XeroAddress(
        AddressLine1=vendor.street,
        City=vendor.city,
        Region=vendor.state,
        PostalCode=vendor.zip_code,
        Country=vendor.country,
    )
    return XeroContactIn(
        Name=vendor.name.strip()[:255],
        ContactNumber=vendor.id[:50],
        EmailAddress=vendor.email,
        Addresses=addresses(address),
        Phones=[XeroPhone(PhoneNumber=vendor.phone)] if vendor.phone else None,
    )


def delivery_address(po: ZohoPurchaseOrder) -> str | None:
    """Zoho's shipping address as Xero's one-text DeliveryAddress (None when Zoho has none)."""
    parts = [
        po.shipping_street,
        " ".join(p for p in (po.shipping_city, po.shipping_state, po.shipping_code) if p),
        po.shipping_country,
    ]
    return ", ".join(p for p in parts if p) or None


def map_purchase_order(
    po: ZohoPurchaseOrder,
    contact_id: str,
    products: dict[str, ZohoProduct],
    conn: Connection,
    tax_rates: dict[str, Decimal],
) -> MappedPurchaseOrder:
    """Map a Zoho purchase order to a Xero purchase order whose Total = Grand_Total."""
    record = f"Purchase_Orders {po.id}" + (f" ({po.number})" if po.number else "")
    if po.document_date is None:
        raise InvalidRecord(record, "PO_Date", "is empty; Xero needs a purchase order date")
    decisions: list[str] = []
    rules = purchase_rules(conn)
    lines = [
        map_line(record, index, line, products, conn, rules, tax_rates, decisions)
        for index, line in enumerate(po.items)
    ]
    lines += record_level_lines(record, po, conn, rules, tax_rates)
    lines = reconcile_total(record, po.grand_total, lines, conn, decisions)
    purchase_order = XeroPurchaseOrderIn(
        Contact=XeroContactRef(ContactID=contact_id),
        LineItems=[line.body for line in lines],
        Date=po.document_date,
        DeliveryDate=po.delivery_date,
        LineAmountTypes=conn.line_amount_types,
        Reference=(po.number or po.subject or po.id)[:255],
        CurrencyCode=po.currency,
        CurrencyRate=currency_rate(po, conn),
        DeliveryAddress=delivery_address(po),
        Status=conn.purchase_order_status,
    )
    return MappedPurchaseOrder(purchase_order, xero_total(lines, conn), decisions)
