"""Stage 3: make sure every product on the document exists as a Xero item (by Code).

Products are read in one Zoho call. Items missing from the link cache wait in the tenant's buffer
(workers/batching.py): the products of many documents are looked up in one Xero call and the
missing ones created in one batched call (`summarizeErrors=false`), so a burst of documents over
the same hundred products costs a handful of calls. Purchase orders use the same stage: an item
first met on a purchase order is created with purchase details too.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from schemas.errors import InvalidRecord, ValidationFailed
from schemas.jobs import StageMessage
from schemas.mapping import item_from_product, product_code
from schemas.wire import dumps
from schemas.xero import XeroItemIn
from schemas.zoho import ZohoProduct, parse_record
from workers.batching import AwaitingBatch, Element, Results, batch_handler, flush_key
from workers.context import StageContext
from workers.history import record_key
from workers.stage import stage

PRODUCT_FIELDS = ["Product_Name", "Product_Code", "Unit_Price", "Description"]
ITEMS = "items"
LINK = "item"


@stage("zxsync.item_precheck")
def item_precheck(msg: StageMessage, ctx: StageContext) -> StageMessage:
    """Find or create the Xero items of the document's products (in a batch)."""
    if msg.intent == "cancel":
        return msg  # a cancellation needs only the link
    doc = msg.inventory_document()
    assert doc is not None, "fetch_record runs first"
    wanted = list(dict.fromkeys(line.product.id for line in doc.items))
    products = msg.products or _read_products(msg, ctx, wanted)  # carried over a batch wait
    codes = {p.id: product_code(p) for p in products}
    linked = (  # the naive path's first pass ignores the cache
        ctx.idempotency.links(LINK, ctx.connection.name, wanted)
        if ctx.settings.zxs_batching or ctx.batch is not None
        else {}
    )
    key = record_key(ctx.connection.name, msg.job.module, msg.job.record_id)
    for product_id in wanted:
        linked[product_id] = ctx.batch_outcome(product_id) or linked.get(product_id, {})
        if linked[product_id].get("note"):  # adopted by code with another name
            ctx.history.log(key, "zxsync.item_precheck", "item", detail=linked[product_id]["note"])
    todo = [p for p in products if linked[p.id].get("Code") != codes[p.id]]
    if todo:
        prices = _purchase_prices(msg)
        raise AwaitingBatch(
            ITEMS,
            {
                p.id: {
                    "record": f"Products {p.id} ({p.name})",
                    "body": item_from_product(p, ctx.connection, prices.get(p.id)).body(),
                }
                for p in todo
            },
            carry=msg.model_copy(update={"products": products}).model_dump(mode="json"),
        )
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


@batch_handler(ITEMS)
def write_items(ctx: StageContext, elements: list[Element]) -> Results:
    """Create the batch's items in one call; look up (one call) only the codes Xero has.

    Creating first costs one call for a batch of new products (a burst's usual case); an item
    whose code exists is refused ("Item code 'X' already exists") and then linked by lookup.
    The naive path looks every code up first.
    """
    bodies = {e.id: XeroItemIn.model_validate(e.payload["body"]) for e in elements}
    records = {bodies[e.id].Code: str(e.payload["record"]) for e in elements}
    # one body per code: two products with the same code share the item
    wanted = {b.Code: b for b in bodies.values()}
    found: dict[str, str] = {}
    if not ctx.settings.zxs_batching:
        found = {i.Code: i.ItemID for i in ctx.xero.find_items(sorted(wanted))}
    refused = _create(ctx, elements, [b for c, b in wanted.items() if c not in found], found)
    taken = [code for code, errors in refused.items() if _exists(errors)]
    names: dict[str, str | None] = {}  # code -> the name of an existing item adopted by code
    if taken:
        existing = ctx.xero.find_items(taken)
        found.update({i.Code: i.ItemID for i in existing})
        names.update({i.Code: i.Name for i in existing})
    links: dict[str, dict[str, Any]] = {}
    results: Results = {}
    for element_id, body in bodies.items():
        if body.Code in found:
            links[element_id] = {"Code": body.Code, "ItemID": found[body.Code]}
            outcome = dict(links[element_id])
            name = names.get(body.Code, body.Name)
            if (name or "").strip().casefold() != body.Name.strip().casefold():
                outcome["note"] = (
                    f"adopted the Xero item {body.Code!r} by its code, though its name is "
                    f"{name!r} and the Zoho product's is {body.Name!r}"
                )
            results[element_id] = outcome
        else:
            record = records[body.Code]
            results[element_id] = ValidationFailed(
                "Xero",
                [
                    f"{record}: item '{body.Code}': {m}"
                    for m in refused.get(body.Code) or ["Xero returned no item for this code"]
                ],
            )
    assert ctx.flush is not None, "a batch handler runs in a flush"
    ctx.flush.store(LINK, links, [])
    return results


def _exists(errors: list[str]) -> bool:
    return bool(errors) and all("already exists" in m for m in errors)


def _create(
    ctx: StageContext, elements: list[Element], items: list[XeroItemIn], found: dict[str, str]
) -> dict[str, Any]:
    """One PUT for these items: fills `found` (code -> ItemID), returns Xero's errors by code."""
    if not items:
        return {}
    key = flush_key(ITEMS, ctx.connection.name, elements, dumps([i.body() for i in items]))
    assert ctx.flush is not None, "a batch handler runs in a flush"
    ctx.flush.check()  # a flusher whose lease expired creates nothing
    refused: dict[str, Any] = {}
    for body, (_, created, errors) in zip(items, ctx.xero.create_items(items, key), strict=True):
        if created is None:
            refused[body.Code] = errors
        else:
            found[created.Code] = created.ItemID
    return refused
