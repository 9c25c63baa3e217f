"""Stage 5: write the Xero invoice's id, number and status back to the Zoho record."""

from __future__ import annotations

from schemas.jobs import StageMessage
from schemas.payments import INVOICE_REVERSE_LINK
from schemas.zoho import ZohoInvoiceWriteBack
from workers.context import StageContext
from workers.history import outcome_of, record_key
from workers.stage import stage


@stage("zxsync.zoho_writeback")
def zoho_writeback(msg: StageMessage, ctx: StageContext) -> StageMessage:
    """Update the Zoho document (without firing Zoho workflows) and close the record's run."""
    job = msg.job
    update = ZohoInvoiceWriteBack(
        id=job.record_id,
        xero_invoice_id=msg.xero_invoice_id,
        xero_invoice_number=msg.xero_invoice_number,
        xero_invoice_status=msg.xero_invoice_status,
        sync_status="Synced",
        sync_error="",
        online_invoice_url=msg.xero_online_invoice_url,
    )
    if msg.xero_invoice_id and msg.document is not None:  # payment feedback's way back
        reverse = {
            "module": job.module,
            "record_id": job.record_id,
            "account_id": msg.document.account.id,
        }
        ctx.idempotency.set_links(
            INVOICE_REVERSE_LINK, job.connection, {msg.xero_invoice_id: reverse}
        )
    ctx.zoho.update_records(job.module, [update.model_dump(by_alias=True, exclude_none=True)])
    key = record_key(job.connection, job.module, job.record_id)
    ctx.history.finish(
        job.connection,
        key,
        outcome_of(msg.xero_action),
        f"{msg.xero_invoice_number} ({msg.xero_action})",
    )
    return msg
