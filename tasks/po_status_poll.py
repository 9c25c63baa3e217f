"""Status back for purchase orders: poll Xero and write changed statuses to Zoho.

Xero's webhooks have no purchase order events, so a poll asks Xero for
the orders modified since a high-water mark (`If-Modified-Since`, accurate to the second; FACTS
"Paging") and writes each linked order's new status (BILLED when a bill was created from it) to
Zoho's Xero_PO_Status, up to 100 records per Zoho call. The mark is the newest UpdatedDateUTC
seen and only moves after Zoho took the updates, so a failed poll is simply repeated next time;
orders of that second come back again and are no-ops because their status is unchanged. The
poll backs off while no status changes (workers/polling.py: every ZXS_PO_POLL_SECONDS after a
change, up to ZXS_PO_POLL_MAX_SECONDS while idle), so an idle tenant costs a few calls a day.
"""

from __future__ import annotations

import time
from datetime import datetime

import redis

from schemas.history import HistoryEvent
from schemas.links import PurchaseOrderLink
from schemas.xero import XeroPurchaseOrder
from schemas.zoho import ZohoPurchaseOrderWriteBack
from tasks.purchase_order_create import LINK, REVERSE_LINK
from workers import keys
from workers.app import app
from workers.context import StageContext, build_context
from workers.history import record_key
from workers.logs import log
from workers.policies import HOUSEKEEPING
from workers.policies.time_limit import POLL_SOFT_SECONDS
from workers.polling import PollSchedule
from workers.redis import get_redis
from workers.settings import get_settings

TASK_NAME = "zxsync.po_status_poll"
MODULE = "Purchase_Orders"


@app.task(name=TASK_NAME, soft_time_limit=POLL_SOFT_SECONDS, **HOUSEKEEPING)
def po_status_poll(connection: str | None = None) -> int:
    """Beat entry: without a connection, start a poll for each connection whose poll is due
    (workers/polling.py); with one, poll it now. Returns updates made."""
    if connection is None:
        names = list(get_settings().connections())
        for name in po_schedule(get_redis()).claim_due(names, time.time()):
            app.send_task(TASK_NAME, args=[name])
        return 0
    return poll_and_schedule(build_context(connection), time.time())


def po_schedule(redis_client: redis.Redis) -> PollSchedule:
    s = get_settings()
    return PollSchedule(redis_client, "po_status", s.zxs_po_poll_seconds, s.zxs_po_poll_max_seconds)


def poll_and_schedule(ctx: StageContext, now: float) -> int:
    """One poll; the next comes sooner after a status change, later while nothing changes."""
    updated = poll_statuses(ctx)
    po_schedule(ctx.redis).finished(ctx.connection.name, now, found=updated > 0)
    return updated


def poll_statuses(ctx: StageContext) -> int:
    """One poll of one connection; the number of Zoho purchase orders updated."""
    conn = ctx.connection.name
    mark_key = keys.PO_POLL(conn)
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
        with ctx.idempotency.lock(f"{LINK.name}:{conn}:{record_id}"):
            link = ctx.idempotency.link(LINK, conn, record_id) or PurchaseOrderLink(
                PurchaseOrderID=order.PurchaseOrderID,
                PurchaseOrderNumber=order.PurchaseOrderNumber,
            )
            link = link.model_copy(update={"Status": order.Status})
            ctx.idempotency.set_links(LINK, conn, {record_id: link})
        key = record_key(conn, MODULE, record_id)
        ctx.history.log(key, TASK_NAME, HistoryEvent.STATUS, status=order.Status)
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
        o.PurchaseOrderID: reverse[o.PurchaseOrderID].record_id
        for o in orders
        if o.PurchaseOrderID in reverse
    }
    links = ctx.idempotency.links(LINK, conn, list(record_ids.values()))
    return [
        (record_ids[o.PurchaseOrderID], o)
        for o in orders
        if o.PurchaseOrderID in record_ids
        and _status(links.get(record_ids[o.PurchaseOrderID])) != o.Status
    ]


def _status(link: PurchaseOrderLink | None) -> str | None:
    return link.Status if link is not None else None
