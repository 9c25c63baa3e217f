"""The products of a document's lines, read from Zoho in one call: by fetch_record with the
document, so the stages after it need no Zoho call of their own (the flusher can run the items
stage on once it has written the contact: issue #19), and by item_precheck for a message that
came without them (a replay from that stage, a message sent by an older version)."""

from __future__ import annotations

from schemas.errors import InvalidRecord
from schemas.jobs import SyncJob
from schemas.zoho import ZohoInventoryDocument, ZohoProduct, parse_record
from workers.context import StageContext

PRODUCT_FIELDS = ["Product_Name", "Product_Code", "Unit_Price", "Description"]


def product_ids(doc: ZohoInventoryDocument) -> list[str]:
    """The document's product ids, each once, in line order."""
    return list(dict.fromkeys(line.product.id for line in doc.items))


def read_products(job: SyncJob, doc: ZohoInventoryDocument, ctx: StageContext) -> list[ZohoProduct]:
    """The document's products in `product_ids` order; a line naming a product Zoho does not have is
    an InvalidRecord naming the record and the line."""
    ids = product_ids(doc)
    raws = ctx.zoho.get_records("Products", ids, PRODUCT_FIELDS)
    products = {p.id: p for p in (parse_record(ZohoProduct, "Products", r) for r in raws)}
    for index, line in enumerate(doc.items):
        if line.product.id not in products:
            raise InvalidRecord(
                f"{job.module} {job.record_id}",
                f"line {index + 1}.Product_Name",
                f"product {line.product.id} ({line.product.name}) does not exist in Zoho",
            )
    return [products[pid] for pid in ids]
