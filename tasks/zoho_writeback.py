"""Stage 5: write the Xero invoice's id, number and status back to the Zoho record.

Write-backs of a connection share Zoho updates of up to 100 records
(tasks/batch_handlers/writebacks.py); a record Zoho refuses is dead-lettered alone. The record's
run ends when its write-back is done.
"""

from __future__ import annotations

from schemas.jobs import StageMessage
from schemas.links import INVOICE_XERO, PAYMENT_CONTACT, ContactAccount, InvoiceRecord, WrittenBack
from schemas.zoho import ZohoInvoiceWriteBack
from tasks.batch_handlers.elements import WriteBackElement
from tasks.batch_handlers.writebacks import WRITEBACKS
from workers.batching import AwaitingBatch
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
        credit_note=msg.xero_credit_note,
    )
    if msg.xero_invoice_id and msg.document is not None:  # payment feedback's way back
        reverse = InvoiceRecord(
            module=job.module, record_id=job.record_id, account_id=msg.document.account.id
        )
        ctx.idempotency.set_links(INVOICE_XERO, job.connection, {msg.xero_invoice_id: reverse})
        if msg.xero_contact_id:  # contact sync's way back (Xero contact -> Zoho account)
            ctx.idempotency.set_links(
                PAYMENT_CONTACT,
                job.connection,
                {msg.xero_contact_id: ContactAccount(account_id=msg.document.account.id)},
            )
    element_id = f"{job.module}:{job.record_id}"
    if ctx.batch_outcome(element_id, WrittenBack) is None:
        fields = update.model_dump(by_alias=True, exclude_none=True)
        element = WriteBackElement(module=job.module, update=fields)
        raise AwaitingBatch(WRITEBACKS, {element_id: element.wire()})
    key = record_key(job.connection, job.module, job.record_id)
    ctx.history.finish(
        job.connection,
        key,
        outcome_of(msg.xero_action),
        f"{msg.xero_invoice_number} ({msg.xero_action})",
    )
    return msg
