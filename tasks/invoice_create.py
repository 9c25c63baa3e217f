"""Stage 4: create the Xero ACCREC invoice exactly once, then keep it in step with Zoho.

Three guards against duplicates, strongest first: the stored link (a second run finds the
invoice), a lookup on any retry, redelivery or replay (Xero forgets idempotency keys after 6
minutes), and the Idempotency-Key derived from the record and its content for every write.

A document converted from a quote or sales order already in Xero adopts that invoice (one Xero
invoice per sale). An edit updates the invoice while Xero allows it; a cancelled or deleted Zoho
document voids (AUTHORISED) or deletes (DRAFT/SUBMITTED) it. What Xero refuses is a permanent
error, so it becomes an exception report, never a silent skip.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from clients.xero import quote
from schemas.errors import InvalidRecord, TotalMismatch
from schemas.jobs import StageMessage
from schemas.mapping import MappedInvoice, map_invoice
from schemas.wire import dumps, loads
from schemas.xero import XeroInvoice, XeroInvoiceStatusChange
from workers.context import StageContext
from workers.idempotency import idempotency_key
from workers.stage import stage

TAX_RATE_CACHE_SECONDS = 3600
LINK = "invoice"


@stage("zxsync.invoice_create")
def invoice_create(msg: StageMessage, ctx: StageContext) -> StageMessage:
    """Create, update or cancel the Xero invoice of a Zoho quote, sales order or invoice."""
    job = msg.job
    link_id = f"{job.module}:{job.record_id}"
    if msg.intent == "cancel":
        with ctx.idempotency.lock(f"invoice:{job.connection}:{link_id}"):
            return _cancel(msg, ctx, link_id)
    doc = msg.document
    assert doc is not None and msg.xero_contact_id, "prechecks run first"
    products = {p.id: p for p in msg.products}
    mapped = map_invoice(
        job.module, doc, msg.xero_contact_id, products, ctx.connection, tax_rates(ctx)
    )
    for decision in mapped.decisions:
        ctx.history.log(f"{job.connection}:{link_id}", "mapping", decision)
    with ctx.idempotency.lock(f"invoice:{job.connection}:{link_id}"):
        link = ctx.idempotency.link(LINK, job.connection, link_id)
        if link is None and msg.converted_from:
            link = ctx.idempotency.link(LINK, job.connection, msg.converted_from)
            ctx.history.log(
                f"{job.connection}:{link_id}",
                "invoice_create",
                "converted",
                detail=f"adopts the Xero invoice of {msg.converted_from}",
            )
        invoice: XeroInvoice | None = None
        if link is None:
            action, invoice = _create_once(msg, ctx, mapped)
        elif link["version"] == mapped.content_version:
            action = "unchanged"
        else:
            action = "updated"
            key = idempotency_key("invoice-update", job.connection, link_id, mapped.content_version)
            invoice = ctx.xero.update_invoice(link["InvoiceID"], mapped.invoice.body(), key)
        if invoice is not None:  # keep what later stages noted (e.g. that it was sent)
            link = {**(link or {}), **_link(invoice, mapped.content_version)}
        assert link is not None
        ctx.idempotency.set_links(LINK, job.connection, {link_id: link})
    if invoice is not None and invoice.Total != doc.grand_total:
        raise TotalMismatch(f"{job.module} {job.record_id}", doc.grand_total, invoice.Total)
    return msg.model_copy(
        update={
            "content_version": mapped.content_version,
            "xero_invoice_id": link["InvoiceID"],
            "xero_invoice_number": link["InvoiceNumber"],
            "xero_invoice_status": link["Status"],
            "xero_action": action,
        }
    )


def _link(invoice: XeroInvoice, version: str | None) -> dict[str, Any]:
    return {
        "InvoiceID": invoice.InvoiceID,
        "InvoiceNumber": invoice.InvoiceNumber,
        "Status": invoice.Status,
        "version": version,
    }


def _cancel(msg: StageMessage, ctx: StageContext, link_id: str) -> StageMessage:
    """Void an AUTHORISED invoice, delete a DRAFT/SUBMITTED one; a paid one needs a person."""
    job = msg.job
    link = ctx.idempotency.link(LINK, job.connection, link_id)
    assert link is not None, "fetch_record cancels linked documents only"
    current = ctx.xero.get_invoice(link["InvoiceID"])
    action = "unchanged"
    if current.Status in ("DRAFT", "SUBMITTED", "AUTHORISED"):
        target = "VOIDED" if current.Status == "AUTHORISED" else "DELETED"
        body = XeroInvoiceStatusChange(InvoiceID=current.InvoiceID, Status=target).body()
        key = idempotency_key("invoice-cancel", job.connection, link_id, target)
        current = ctx.xero.update_invoice(current.InvoiceID, body, key)
        action = "voided" if target == "VOIDED" else "deleted"
    elif current.Status == "PAID":
        raise InvalidRecord(
            f"{job.module} {job.record_id}",
            "Status",
            f"was cancelled in Zoho, but Xero invoice {current.InvoiceNumber} is paid",
            hint="Refund or credit the invoice in Xero by hand; Xero does not void paid invoices.",
        )
    link = {**link, **_link(current, link.get("version"))}
    ctx.idempotency.set_links(LINK, job.connection, {link_id: link})
    return msg.model_copy(
        update={
            "xero_invoice_id": current.InvoiceID,
            "xero_invoice_number": current.InvoiceNumber,
            "xero_invoice_status": current.Status,
            "xero_action": action,
        }
    )


def _create_once(
    msg: StageMessage, ctx: StageContext, mapped: MappedInvoice
) -> tuple[str, XeroInvoice]:
    """Adopt an invoice an earlier attempt created, else create it with an Idempotency-Key.

    A retry, a redelivery or a replay may come after Xero forgot the key (6 minutes), so those
    look the invoice up first: by InvoiceNumber when we set it (unique per organisation), else
    by Reference and contact.
    """
    job, body = msg.job, mapped.invoice
    if (ctx.attempt > 0 or ctx.redelivered or job.event == "replay") and body.Reference:
        # Xero's own numbers are unique per organisation; otherwise Reference + contact
        same = (
            f"InvoiceNumber=={quote(body.InvoiceNumber)}"
            if body.InvoiceNumber
            else f"Reference=={quote(body.Reference)} AND "
            f'Contact.ContactID==guid("{body.Contact.ContactID}")'
        )
        where = f'Type=="ACCREC" AND {same} AND Status!="DELETED" AND Status!="VOIDED"'
        earlier = ctx.xero.find_invoices(where)
        if earlier:
            return "adopted", earlier[0]
    key = idempotency_key(
        "invoice", job.connection, job.module, job.record_id, mapped.content_version
    )
    return "created", ctx.xero.create_invoice(body, key)


def tax_rates(ctx: StageContext) -> dict[str, Decimal]:
    """The organisation's tax rates, cached in Redis for an hour (one call, not one per job)."""
    cache_key = f"zxs:cache:{ctx.connection.xero_tenant_id}:taxrates"
    cached = ctx.redis.get(cache_key)
    if cached:
        return {k: Decimal(v) for k, v in loads(str(cached)).items()}
    rates = ctx.xero.tax_rates()
    ctx.redis.set(
        cache_key, dumps({k: str(v) for k, v in rates.items()}), ex=TAX_RATE_CACHE_SECONDS
    )
    return rates
