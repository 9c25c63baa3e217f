"""Status back for purchase orders: poll Xero and write changed statuses to Zoho.

Xero's webhooks have no purchase order events yet in this project, so a beat task asks Xero for
the orders modified since a high-water mark (`If-Modified-Since`, accurate to the second; FACTS
"Paging") and writes each linked order's new status (BILLED when a bill was created from it) to
Zoho's Xero_PO_Status, up to 100 records per Zoho call. The mark is the newest UpdatedDateUTC
seen and only moves after Zoho took the updates, so a failed poll is simply repeated next time;
orders of that second come back again and are no-ops because their status is unchanged.
"""

from __future__ import annotations

from datetime import datetime

from schemas.xero import XeroPurchaseOrder
from schemas.zoho import ZohoPurchaseOrderWriteBack
from tasks.purchase_order_create import LINK, REVERSE_LINK
from workers.app import app
from workers.context import StageContext, build_context
from workers.history import record_key
from workers.logs import log
from workers.settings import get_settings

TASK_NAME = "zxsync.po_status_poll"
MODULE = "Purchase_Orders"


@app.task(name=TASK_NAME)
def po_status_poll(connection: str | None = None) -> int:
    """Beat entry: without a connection, start one poll per connection; returns updates made."""
    if connection is None:
        for name in get_settings().connections():
            app.send_task(TASK_NAME, args=[name])
        return 0
    return poll_statuses(build_context(connection))


def poll_statuses(ctx: StageContext) -> int:
    """One poll of one connection; the number of Zoho purchase orders updated."""
    conn = ctx.connection.name
    mark_key = f"zxs:po_poll:{conn}"
    mark = ctx.redis.get(mark_key)
    orders = ctx.xero.purchase_orders({}, datetime.fromisoformat(str(mark)) if mark else None)
    changed = _changed(ctx, orders)
    ctx.zoho.update_records(
        MODULE,
        [
            ZohoPurchaseOrderWriteBack(id=record_id, xero_po_status=order.Status).model_dump(
                by_alias=True, exclude_none=True
            )
            for record_id, order in changed
        ],
    )
    for record_id, order in changed:
        with ctx.idempotency.lock(f"{LINK}:{conn}:{record_id}"):
            link = ctx.idempotency.link(LINK, conn, record_id) or {}
            ctx.idempotency.set_links(LINK, conn, {record_id: {**link, "Status": order.Status}})
        key = record_key(conn, MODULE, record_id)
        ctx.history.log(key, TASK_NAME, "status", status=order.Status)
    stamps = [o.UpdatedDateUTC for o in orders if o.UpdatedDateUTC]
    if stamps:
        ctx.redis.set(mark_key, max(stamps).isoformat())
    log.info("po_status_poll", connection=conn, seen=len(orders), updated=len(changed))
    return len(changed)


def _changed(
    ctx: StageContext, orders: list[XeroPurchaseOrder]
) -> list[tuple[str, XeroPurchaseOrder]]:
    """(Zoho record id, order) for linked orders whose Xero status differs from the last known."""
    conn = ctx.connection.name
    reverse = ctx.idempotency.links(REVERSE_LINK, conn, [o.PurchaseOrderID for o in orders])
    record_ids = {
        o.PurchaseOrderID: str(reverse[o.PurchaseOrderID]["record_id"])
        for o in orders
        if o.PurchaseOrderID in reverse
    }
    links = ctx.idempotency.links(LINK, conn, list(record_ids.values()))
    return [
        (record_ids[o.PurchaseOrderID], o)
        for o in orders
        if o.PurchaseOrderID in record_ids
        and links.get(record_ids[o.PurchaseOrderID], {}).get("Status") != o.Status
    ]
