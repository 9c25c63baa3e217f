"""Purchase orders, stage 5: write the Xero order's id, number and status back to Zoho."""

from __future__ import annotations

from schemas.jobs import StageMessage
from schemas.zoho import ZohoPurchaseOrderWriteBack
from workers.context import StageContext
from workers.history import outcome_of, record_key
from workers.stage import stage


@stage("zxsync.po_writeback")
def po_writeback(msg: StageMessage, ctx: StageContext) -> StageMessage:
    """Update the Zoho purchase order (without firing Zoho workflows) and close the run."""
    job = msg.job
    update = ZohoPurchaseOrderWriteBack(
        id=job.record_id,
        xero_purchase_order_id=msg.xero_purchase_order_id,
        xero_purchase_order_number=msg.xero_purchase_order_number,
        xero_po_status=msg.xero_purchase_order_status,
        sync_status="Synced",
        sync_error="",
    )
    ctx.zoho.update_records(job.module, [update.model_dump(by_alias=True, exclude_none=True)])
    ctx.history.finish(
        job.connection,
        record_key(job.connection, job.module, job.record_id),
        outcome_of(msg.xero_action),
        f"{msg.xero_purchase_order_number} ({msg.xero_action})",
    )
    return msg
