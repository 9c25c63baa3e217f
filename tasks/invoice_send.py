"""Stage 5: get the invoice to the customer, by Xero or by Zoho (connection `sender`).

- `xero`: Xero e-mails it (POST /Invoices/{id}/Email, allowed once SUBMITTED/AUTHORISED) and marks
  it sent; the call carries an Idempotency-Key so a retry within 6 minutes sends no second mail.
- `zoho`: Zoho sends it: the record gets Xero's online-invoice link and the invoice PDF attached.
Either happens once per invoice (remembered on the link), never on later edits.
"""

from __future__ import annotations

from schemas.history import HistoryEvent
from schemas.jobs import StageMessage, is_backfill
from schemas.links import INVOICE, InvoiceLink
from workers.context import StageContext
from workers.idempotency import idempotency_key
from workers.stage import stage

EMAILABLE = ("SUBMITTED", "AUTHORISED")
LINKABLE = ("AUTHORISED", "PAID")


@stage("zxsync.invoice_send")
def invoice_send(msg: StageMessage, ctx: StageContext) -> StageMessage:
    """Send the invoice the configured way, once; skip (and say why) when it cannot go yet."""
    conn, job = ctx.connection, msg.job
    if conn.sender == "none" or msg.intent == "cancel" or not msg.xero_invoice_id:
        return msg
    link_id = f"{job.module}:{job.record_id}"
    link = ctx.idempotency.link(INVOICE, job.connection, link_id)
    if link is None:  # invoice_create links what it names
        link = InvoiceLink(InvoiceID=msg.xero_invoice_id)
    key = f"{job.connection}:{link_id}"
    if link.sent_by:
        return msg.model_copy(update={"xero_online_invoice_url": link.online_url})
    if is_backfill(job):  # history: the customer had it long ago; later edits send nothing
        backfilled = link.model_copy(update={"sent_by": "backfill"})
        ctx.idempotency.set_links(INVOICE, job.connection, {link_id: backfilled})
        return msg
    status = msg.xero_invoice_status or ""
    if conn.sender == "xero":
        if status not in EMAILABLE:
            ctx.history.log(
                key,
                "zxsync.invoice_send",
                HistoryEvent.WAITING,
                detail=f"Xero e-mails SUBMITTED or AUTHORISED invoices; this is {status}",
            )
            return msg
        ctx.xero.email_invoice(
            msg.xero_invoice_id, idempotency_key("email", job.connection, msg.xero_invoice_id)
        )
        sent = {"sent_by": "xero"}
    else:
        if status not in LINKABLE:
            ctx.history.log(
                key,
                "zxsync.invoice_send",
                HistoryEvent.WAITING,
                detail=f"Xero has no online invoice for a {status} invoice",
            )
            return msg
        url = ctx.xero.online_invoice_url(msg.xero_invoice_id)
        pdf = ctx.xero.invoice_pdf(msg.xero_invoice_id)
        name = f"Xero invoice {msg.xero_invoice_number or msg.xero_invoice_id}.pdf"
        ctx.zoho.attach_file(job.module, job.record_id, name, pdf, "application/pdf")
        sent = {"sent_by": "zoho", "online_url": url}
    ctx.idempotency.set_links(INVOICE, job.connection, {link_id: link.model_copy(update=sent)})
    ctx.history.log(key, "zxsync.invoice_send", HistoryEvent.SENT, by=sent["sent_by"])
    return msg.model_copy(update={"xero_online_invoice_url": sent.get("online_url")})
