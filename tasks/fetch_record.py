"""Stage 1: read the Zoho record itself (the job carries only ids; Zoho is the source of truth)
and decide where it stands in the Quote -> Sales Order -> Invoice sequence (schemas/sequence.py);
a document to sync is read with the products of its lines (tasks/products.py).
"""

from __future__ import annotations

from typing import Any

from schemas.errors import NotFound, ValidationFailed
from schemas.jobs import StageMessage
from schemas.links import INVOICE
from schemas.sequence import decide
from schemas.zoho import ZohoPurchaseOrder, ZohoSalesDocument, parse_record
from tasks.products import read_products
from workers.context import StageContext
from workers.stage import stage


@stage("zxsync.fetch_record")
def fetch_record(msg: StageMessage, ctx: StageContext) -> StageMessage:
    """Fetch and validate the quote, sales order, invoice or purchase order named by the job."""
    job, conn = msg.job, ctx.connection
    ctx.idempotency.reading(job)  # later changes get a job of their own (relay coalescing)
    if job.module == "Purchase_Orders":
        raw = ctx.zoho.get_record(job.module, job.record_id)
        order = parse_record(ZohoPurchaseOrder, job.module, raw)
        products = read_products(job, order, ctx)
        return msg.model_copy(update={"purchase_order": order, "products": products})
    own_link = ctx.idempotency.link(INVOICE, conn.name, f"{job.module}:{job.record_id}")
    if job.event == "delete":  # the record is gone from Zoho: only its link tells us anything
        decision = decide(job.module, job.event, None, None, own_link is not None, conn)
        update: dict[str, Any] = {"intent": "cancel"}
        if decision.action != "cancel":
            update = {"skipped_reason": decision.reason}
        elif not _confirmed_deleted(ctx, job.module, job.record_id):
            update = {
                "skipped_reason": f"a delete event came, but Zoho still has {job.module} "
                f"{job.record_id} (it reads, and it is not in the deleted records): nothing "
                "is voided"
            }
        return msg.model_copy(update=update)
    raw = ctx.zoho.get_record(job.module, job.record_id)
    document = parse_record(ZohoSalesDocument, job.module, raw)
    converted_from = None if own_link else _converted_from(ctx, document)
    approval = str(raw.get(conn.approval_field)) if conn.approval_field else None
    decision = decide(
        job.module,
        job.event,
        document.status,
        approval,
        own_link is not None or converted_from is not None,
        conn,
    )
    update = {"document": document, "converted_from": converted_from}
    if decision.action == "cancel":
        update["intent"] = "cancel"
    elif decision.action != "sync":
        update["skipped_reason"] = decision.reason
    else:  # read now, the stages after it need no Zoho call of their own (tasks/products.py)
        update["products"] = read_products(job, document, ctx)
    return msg.model_copy(update=update)


def _confirmed_deleted(ctx: StageContext, module: str, record_id: str) -> bool:
    """A delete event is acted on only once Zoho confirms it: the record reads as gone (204),
    or it is in the module's deleted-records list (a read Zoho refuses with INVALID_DATA)."""
    try:
        ctx.zoho.get_record(module, record_id)
    except NotFound:
        return True
    except ValidationFailed:
        return ctx.zoho.is_deleted(module, record_id)
    return False


def _converted_from(ctx: StageContext, document: ZohoSalesDocument) -> str | None:
    """Link key of the quote or sales order this document was converted from, if that one is
    already in Xero: a converted document must not give a second Xero invoice."""
    conn = ctx.connection.name
    candidates = []
    if document.sales_order:
        candidates.append(f"Sales_Orders:{document.sales_order.id}")
    if document.quote:
        candidates.append(f"Quotes:{document.quote.id}")
    for key in candidates:
        if ctx.idempotency.link(INVOICE, conn, key):
            return key
    if document.sales_order and not document.quote:
        # an invoice from a sales order that was itself converted from a (synced) quote
        order = ctx.zoho.get_record("Sales_Orders", document.sales_order.id)
        quote = order.get("Quote_Name") or {}
        if quote.get("id") and ctx.idempotency.link(INVOICE, conn, f"Quotes:{quote['id']}"):
            return f"Quotes:{quote['id']}"
    return None
