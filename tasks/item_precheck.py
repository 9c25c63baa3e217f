"""Stage 3: make sure every product on the document exists as a Xero item (by Code).

Products are read in one Zoho call, looked up in one Xero call and created in one batched call
(`summarizeErrors=false`), so a ten-line invoice costs three calls, not thirty. Purchase orders
use the same stage: an item first met on a purchase order is created with purchase details too.
"""

from __future__ import annotations

from decimal import Decimal

from schemas.errors import InvalidRecord
from schemas.jobs import StageMessage
from schemas.mapping import item_from_product, product_code
from schemas.zoho import ZohoProduct, parse_record
from workers.context import StageContext
from workers.idempotency import idempotency_key
from workers.stage import stage

PRODUCT_FIELDS = ["Product_Name", "Product_Code", "Unit_Price", "Description"]


@stage("zxsync.item_precheck")
def item_precheck(msg: StageMessage, ctx: StageContext) -> StageMessage:
    """Find or create the Xero items of the document's products."""
    if msg.intent == "cancel":
        return msg  # a cancellation needs only the link
    doc = msg.inventory_document()
    assert doc is not None, "fetch_record runs first"
    conn = ctx.connection.name
    wanted = list(dict.fromkeys(line.product.id for line in doc.items))
    products = _read_products(msg, ctx, wanted)
    codes = {p.id: product_code(p) for p in products}
    linked = ctx.idempotency.links("item", conn, wanted)
    todo = [p for p in products if linked.get(p.id, {}).get("Code") != codes[p.id]]
    if todo:
        with ctx.idempotency.lock(f"items:{conn}"):
            _find_or_create(ctx, todo, codes, _purchase_prices(msg))
    return msg.model_copy(update={"products": products})


def _read_products(msg: StageMessage, ctx: StageContext, wanted: list[str]) -> list[ZohoProduct]:
    raws = ctx.zoho.get_records("Products", wanted, PRODUCT_FIELDS)
    products = {p.id: p for p in (parse_record(ZohoProduct, "Products", r) for r in raws)}
    doc = msg.inventory_document()
    for index, line in enumerate(doc.items if doc else []):
        if line.product.id not in products:
            raise InvalidRecord(
                f"{msg.job.module} {msg.job.record_id}",
                f"line {index + 1}.Product_Name",
                f"product {line.product.id} ({line.product.name}) does not exist in Zoho",
            )
    return [products[pid] for pid in wanted]


def _purchase_prices(msg: StageMessage) -> dict[str, Decimal]:
    """Product id -> the price a purchase order buys it at (empty for sales documents)."""
    po = msg.purchase_order
    return {line.product.id: line.list_price for line in po.items} if po else {}


def _find_or_create(
    ctx: StageContext, todo: list[ZohoProduct], codes: dict[str, str], prices: dict[str, Decimal]
) -> None:
    conn = ctx.connection.name
    found = {item.Code: item.ItemID for item in ctx.xero.find_items([codes[p.id] for p in todo])}
    missing = [p for p in todo if codes[p.id] not in found]
    if missing:
        kind = "purchase_items" if prices else "items"
        key = idempotency_key(kind, conn, *sorted(codes[p.id] for p in missing))
        results = ctx.xero.create_items(
            [item_from_product(p, ctx.connection, prices.get(p.id)) for p in missing], key
        )
        for product, (_, created, errors) in zip(missing, results, strict=True):
            if created is None:
                raise InvalidRecord(
                    f"Products {product.id} ({product.name})",
                    "Product_Code",
                    f"Xero refused item '{codes[product.id]}': {'; '.join(errors)}",
                )
            found[created.Code] = created.ItemID
    ctx.idempotency.set_links(
        "item", conn, {p.id: {"Code": codes[p.id], "ItemID": found[codes[p.id]]} for p in todo}
    )
