"""Purchase orders, stage 2: make sure the Zoho vendor exists as a Xero contact.

Xero's purchase order endpoint does not create contacts (FACTS "Documents"), so the supplier is
found or created here first, with the same match order as customers: stored link, ContactNumber
(the Zoho vendor id), exact Name (a customer who is also a supplier stays one contact), create.
The ContactID is written to the vendor's Xero_Contact_ID field in Zoho once, when first linked.
"""

from __future__ import annotations

from schemas.jobs import FetchedPurchase
from schemas.links import VENDOR
from schemas.purchase_mapping import contact_from_vendor
from schemas.xero import XeroContact
from schemas.zoho import ZohoVendor, parse_record
from tasks.contact_precheck import find_contact, linked_contact
from workers.context import StageContext
from workers.idempotency import idempotency_key
from workers.stage import stage


@stage("zxsync.vendor_precheck")
def vendor_precheck(msg: FetchedPurchase, ctx: StageContext) -> FetchedPurchase:
    """Find or create the Xero contact of the purchase order's vendor."""
    vendor_id = msg.purchase_order.vendor.id
    contact_id = linked_contact(ctx, VENDOR, vendor_id, lambda: _find_or_create(ctx, vendor_id))
    return msg.model_copy(update={"xero_contact_id": contact_id})


def _find_or_create(ctx: StageContext, vendor_id: str) -> XeroContact:
    vendor = parse_record(ZohoVendor, "Vendors", ctx.zoho.get_record("Vendors", vendor_id))
    record = f"Vendors {vendor.id} ({vendor.name})"
    contact = find_contact(ctx, vendor.id, vendor.name, record, "Vendor_Name")
    if contact is None:
        key = idempotency_key("vendor", ctx.connection.name, vendor.id)
        contact = ctx.xero.create_contact(contact_from_vendor(vendor), key)
    if vendor.xero_contact_id != contact.ContactID:
        update = {"id": vendor.id, "Xero_Contact_ID": contact.ContactID}
        ctx.zoho.update_records("Vendors", [update])
    return contact
