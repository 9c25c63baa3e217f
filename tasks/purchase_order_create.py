"""Purchase orders, stage 4: create, update or delete the Xero purchase order, exactly once.

The guards are the invoice stage's (tasks/invoice_create.py): the stored link first, then on any
retry, redelivery or replay a lookup by Reference and contact among the orders of that date
(Xero forgets idempotency keys after 6 minutes; GET /PurchaseOrders filters by date, not
`where`), and an Idempotency-Key derived from the record and its content for every write.

An edit of a synced order updates it while Xero allows (not once BILLED); the connection's
cancelled status deletes it. What Xero refuses is a permanent error for the dead-letter queue.
"""

from __future__ import annotations

from typing import Any

from clients.xero import PROVIDER
from schemas.errors import InvalidRecord, TotalMismatch, ValidationFailed
from schemas.history import HistoryEvent
from schemas.jobs import ContactedPurchase, StageMessage
from schemas.links import (
    PURCHASE_ORDER,
    PURCHASE_ORDER_XERO,
    PurchaseOrderLink,
    PurchaseOrderRecord,
)
from schemas.purchase_mapping import MappedPurchaseOrder, map_purchase_order
from schemas.xero import XeroPurchaseOrder
from tasks.tax_rates import tax_rates
from workers.context import StageContext
from workers.idempotency import idempotency_key
from workers.stage import stage

LINK = PURCHASE_ORDER
REVERSE_LINK = PURCHASE_ORDER_XERO  # Xero PurchaseOrderID -> Zoho record id (status polls)


@stage("zxsync.purchase_order_create")
def purchase_order_create(msg: ContactedPurchase, ctx: StageContext) -> StageMessage:
    """Map the Zoho purchase order and bring its Xero purchase order in step with it."""
    po, job, conn = msg.purchase_order, msg.job, ctx.connection
    cancelled = po.status == conn.purchase_order_cancelled_status
    mapped = None
    if not cancelled:
        products = {p.id: p for p in msg.products}
        mapped = map_purchase_order(po, msg.xero_contact_id, products, conn, tax_rates(ctx))
        for decision in mapped.decisions:
            ctx.history.log(
                f"{job.connection}:{job.module}:{job.record_id}",
                "mapping",
                HistoryEvent.DECISION,
                detail=decision,
            )
    with ctx.idempotency.lock(f"{LINK.name}:{job.connection}:{job.record_id}"):
        link = ctx.idempotency.link(LINK, job.connection, job.record_id)
        skipped = _skip_reason(msg, ctx, link, cancelled)
        if skipped:
            return msg.model_copy(update={"skipped_reason": skipped})
        action, order = _apply(msg, ctx, link, mapped)
        if order is not None:
            link = PurchaseOrderLink(
                PurchaseOrderID=order.PurchaseOrderID,
                PurchaseOrderNumber=order.PurchaseOrderNumber,
                Status=order.Status,
                version=mapped.content_version if mapped else (link.version if link else None),
            )
            ctx.idempotency.set_links(LINK, job.connection, {job.record_id: link})
            reverse = PurchaseOrderRecord(record_id=job.record_id)
            ctx.idempotency.set_links(
                REVERSE_LINK, job.connection, {order.PurchaseOrderID: reverse}
            )
    assert link is not None
    if order is not None and mapped is not None and order.Total != po.grand_total:
        raise TotalMismatch(f"{job.module} {job.record_id}", po.grand_total, order.Total)
    return msg.model_copy(
        update={
            "xero_purchase_order_id": link.PurchaseOrderID,
            "xero_purchase_order_number": link.PurchaseOrderNumber,
            "xero_purchase_order_status": link.Status,
            "xero_action": action,
        }
    )


def _skip_reason(
    msg: ContactedPurchase, ctx: StageContext, link: PurchaseOrderLink | None, cancelled: bool
) -> str | None:
    """Why nothing is sent to Xero for an order not synced yet, or None."""
    po, conn = msg.purchase_order, ctx.connection
    if link is not None:
        return None
    if cancelled:
        return f"cancelled in Zoho ({po.status}) before it reached Xero: nothing to create"
    if conn.purchase_order_sync_statuses and po.status not in conn.purchase_order_sync_statuses:
        return (
            f"Zoho status '{po.status}' is not one that creates a Xero purchase order "
            f"({', '.join(conn.purchase_order_sync_statuses)})"
        )
    return None


def _apply(
    msg: StageMessage,
    ctx: StageContext,
    link: PurchaseOrderLink | None,
    mapped: MappedPurchaseOrder | None,
) -> tuple[str, XeroPurchaseOrder | None]:
    """(what was done, Xero's answer or None when nothing had to change)."""
    job = msg.job
    if link is None:
        assert mapped is not None
        return _create_once(msg, ctx, mapped)
    if mapped is None:
        if link.Status == "DELETED":
            return "unchanged", None
        _refuse_if_billed(msg, link, "deleted")
        key = idempotency_key("purchase_order_delete", job.connection, job.record_id)
        return "deleted", _change(ctx, link, {"Status": "DELETED"}, key)
    if link.version == mapped.content_version:
        return "unchanged", None
    _refuse_if_billed(msg, link, "edited")
    key = idempotency_key(
        "purchase_order_update", job.connection, job.record_id, mapped.content_version
    )
    return "updated", _change(ctx, link, mapped.purchase_order.body(), key)


def _refuse_if_billed(msg: StageMessage, link: PurchaseOrderLink, verb: str) -> None:
    if link.Status in ("BILLED", "DELETED"):
        raise InvalidRecord(
            f"{msg.job.module} {msg.job.record_id}",
            "Status",
            f"Xero purchase order {link.PurchaseOrderNumber} is {link.Status} and cannot be {verb}",
            hint="Make the change in Xero (on its bill), or raise a new purchase order in Zoho.",
        )


def _change(
    ctx: StageContext, link: PurchaseOrderLink, body: dict[str, Any], key: str
) -> XeroPurchaseOrder:
    """POST to the linked order; Xero's refusal keeps its words and says what to do."""
    try:
        return ctx.xero.update_purchase_order(link.PurchaseOrderID, body, key)
    except ValidationFailed as exc:
        raise ValidationFailed(
            PROVIDER,
            exc.messages,
            hint=f"Xero refused to change purchase order {link.PurchaseOrderNumber}: check "
            "its status in Xero (a billed order is final), then replay or fix it there.",
        ) from exc


def _create_once(
    msg: StageMessage, ctx: StageContext, mapped: MappedPurchaseOrder
) -> tuple[str, XeroPurchaseOrder]:
    """Adopt an order an earlier attempt created, else create it with an Idempotency-Key."""
    job, body = msg.job, mapped.purchase_order
    if (ctx.attempt > 0 or ctx.redelivered or job.event == "replay") and body.Date:
        day = body.Date.isoformat()
        earlier = [
            order
            for order in ctx.xero.purchase_orders({"DateFrom": day, "DateTo": day})
            if order.Reference == body.Reference
            and order.Contact is not None
            and order.Contact.ContactID == body.Contact.ContactID
            and order.Status != "DELETED"
        ]
        if earlier:
            return "adopted", earlier[0]
    key = idempotency_key(LINK.name, job.connection, job.record_id, mapped.content_version)
    return "created", ctx.xero.create_purchase_order(body, key)
