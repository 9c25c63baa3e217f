"""Stage 1: read the Zoho record itself (the job carries only ids; Zoho is the source of truth)."""

from __future__ import annotations

from schemas.jobs import StageMessage
from schemas.zoho import ZohoPurchaseOrder, ZohoSalesDocument, parse_record
from workers.context import StageContext
from workers.stage import stage


@stage("zxsync.fetch_record")
def fetch_record(msg: StageMessage, ctx: StageContext) -> StageMessage:
    """Fetch and validate the quote, sales order, invoice or purchase order named by the job."""
    job = msg.job
    raw = ctx.zoho.get_record(job.module, job.record_id)
    if job.module == "Purchase_Orders":
        order = parse_record(ZohoPurchaseOrder, job.module, raw)
        return msg.model_copy(update={"purchase_order": order})
    document = parse_record(ZohoSalesDocument, job.module, raw)
    return msg.model_copy(update={"document": document})
