"""Stage 3: make sure every product on the document exists as a Xero item (by Code).

The products come read with the document (tasks/products.py: one Zoho call), so this stage
calls no API itself and the flusher that wrote the document's contact runs it on. Items missing
from the link cache wait in the tenant's buffer (tasks/batch_handlers/items.py): the products of
many documents are looked up in one Xero call and the missing ones created in one batched call
(`summarizeErrors=false`), so a burst of documents over the same hundred products costs a
handful of calls. Purchase orders use the same
stage: an item first met on a purchase order is created with purchase details too.
"""

from __future__ import annotations

from decimal import Decimal

from schemas.history import HistoryEvent
from schemas.jobs import SaleToCancel, SaleToSync, StageMessage, ToPrice
from schemas.links import ItemLink, ItemOutcome
from schemas.mapping import item_from_product, product_code
from tasks.batch_handlers.elements import ItemElement
from tasks.batch_handlers.items import ITEMS, LINK
from tasks.products import product_ids, read_products
from workers.batching import AwaitingBatch
from workers.context import StageContext
from workers.history import record_key
from workers.stage import stage


@stage("zxsync.item_precheck")
def item_precheck(msg: ToPrice, ctx: StageContext) -> StageMessage:
    """Find or create the Xero items of the document's products (in a batch)."""
    if isinstance(msg, SaleToCancel):
        return msg  # a cancellation needs only the link
    doc = msg.document if isinstance(msg, SaleToSync) else msg.purchase_order
    wanted = product_ids(doc)
    # read with the document (tasks/fetch_record.py), or carried over a batch wait
    products = msg.products or read_products(msg.job, doc, ctx)
    codes = {p.id: product_code(p) for p in products}
    linked: dict[str, ItemLink] = (  # the naive path's first pass ignores the cache
        ctx.idempotency.links(LINK, ctx.connection.name, wanted)
        if ctx.settings.zxs_batching or ctx.batch is not None
        else {}
    )
    key = record_key(ctx.connection.name, msg.job.module, msg.job.record_id)
    for product_id in wanted:
        outcome = ctx.batch_outcome(product_id, ItemOutcome)
        if outcome is not None:
            linked[product_id] = outcome
            if outcome.note:  # adopted by code with another name
                ctx.history.log(key, "zxsync.item_precheck", HistoryEvent.ITEM, detail=outcome.note)
    todo = [p for p in products if p.id not in linked or linked[p.id].Code != codes[p.id]]
    if todo:
        prices = _purchase_prices(msg)
        raise AwaitingBatch(
            ITEMS,
            {
                p.id: ItemElement(
                    record=f"Products {p.id} ({p.name})",
                    body=item_from_product(p, ctx.connection, prices.get(p.id)).body(),
                ).wire()
                for p in todo
            },
            carry=msg.model_copy(update={"products": products}).model_dump(mode="json"),
        )
    return msg.model_copy(update={"products": products})


def _purchase_prices(msg: StageMessage) -> dict[str, Decimal]:
    """Product id -> the price a purchase order buys it at (empty for sales documents)."""
    po = msg.purchase_order
    return {line.product.id: line.list_price for line in po.items} if po else {}
