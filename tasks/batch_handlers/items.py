"""The batch handler of new Xero items (kind `items`): the products of many documents in one
call. Stage 3 (tasks/item_precheck.py) raises `AwaitingBatch(ITEMS, ...)`; a flush creates the
items first and looks up (one call) only the codes Xero says exist."""

from __future__ import annotations

from typing import Any

from schemas.errors import ValidationFailed
from schemas.links import ITEM, ItemLink, ItemOutcome
from schemas.wire import dumps
from schemas.xero import XeroItemIn
from tasks.batch_handlers.elements import ItemElement
from workers.batching import Element, Results, batch_handler, flush_key
from workers.context import StageContext

ITEMS = "items"
LINK = ITEM


@batch_handler(ITEMS)
def write_items(ctx: StageContext, elements: list[Element]) -> Results:
    """Create the batch's items in one call; look up (one call) only the codes Xero has.

    Creating first costs one call for a batch of new products (a burst's usual case); an item
    whose code exists is refused ("Item code 'X' already exists") and then linked by lookup.
    The naive path looks every code up first.
    """
    bodies = {e.id: XeroItemIn.model_validate(_payload(e).body) for e in elements}
    records = {bodies[e.id].Code: str(_payload(e).record) for e in elements}
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
    links: dict[str, ItemLink] = {}
    results: Results = {}
    for element_id, body in bodies.items():
        if body.Code in found:
            links[element_id] = ItemLink(Code=body.Code, ItemID=found[body.Code])
            name = names.get(body.Code, body.Name)
            note = None
            if (name or "").strip().casefold() != body.Name.strip().casefold():
                note = (
                    f"adopted the Xero item {body.Code!r} by its code, though its name is "
                    f"{name!r} and the Zoho product's is {body.Name!r}"
                )
            results[element_id] = ItemOutcome(Code=body.Code, ItemID=found[body.Code], note=note)
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


def _payload(element: Element) -> ItemElement:
    return ItemElement.model_validate(element.payload)
