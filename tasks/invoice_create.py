"""Stage 4: create the Xero ACCREC invoice, exactly once.

Three guards, strongest first: the stored link (a second run finds the invoice), a lookup by
Reference and contact on any retry or redelivery (Xero forgets idempotency keys after 6 minutes),
and the Idempotency-Key derived from the record and its content for the create itself.
"""

from __future__ import annotations

from decimal import Decimal

from clients.xero import quote
from schemas.errors import TotalMismatch
from schemas.jobs import StageMessage
from schemas.mapping import MappedInvoice, map_invoice
from schemas.wire import dumps, loads
from schemas.xero import XeroInvoice
from workers.context import StageContext
from workers.idempotency import idempotency_key
from workers.stage import stage

TAX_RATE_CACHE_SECONDS = 3600


@stage("zxsync.invoice_create")
def invoice_create(msg: StageMessage, ctx: StageContext) -> StageMessage:
    """Map the Zoho document and create its Xero invoice unless it already exists."""
    doc, job = msg.document, msg.job
    assert doc is not None and msg.xero_contact_id, "prechecks run first"
    products = {p.id: p for p in msg.products}
    mapped = map_invoice(
        job.module, doc, msg.xero_contact_id, products, ctx.connection, tax_rates(ctx)
    )
    for decision in mapped.decisions:
        ctx.history.log(f"{job.connection}:{job.module}:{job.record_id}", "mapping", decision)
    link_id = f"{job.module}:{job.record_id}"
    with ctx.idempotency.lock(f"invoice:{job.connection}:{link_id}"):
        link = ctx.idempotency.link("invoice", job.connection, link_id)
        if link and link["version"] != mapped.content_version:
            return msg.model_copy(
                update={
                    "skipped_reason": (
                        f"already in Xero as {link['InvoiceNumber']}; edits are not synced by "
                        "this version, so Xero was left unchanged"
                    )
                }
            )
        if link:
            action, invoice = "unchanged", None
        else:
            action, invoice = _create_once(msg, ctx, mapped)
            link = {
                "InvoiceID": invoice.InvoiceID,
                "InvoiceNumber": invoice.InvoiceNumber,
                "Status": invoice.Status,
                "version": mapped.content_version,
            }
            ctx.idempotency.set_links("invoice", job.connection, {link_id: link})
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


def _create_once(
    msg: StageMessage, ctx: StageContext, mapped: MappedInvoice
) -> tuple[str, XeroInvoice]:
    """Adopt an invoice an earlier attempt created, else create it with an Idempotency-Key."""
    job, body = msg.job, mapped.invoice
    if (ctx.attempt > 0 or ctx.redelivered) and body.Reference:
        where = (
            f'Type=="ACCREC" AND Reference=={quote(body.Reference)} AND '
            f'Contact.ContactID==guid("{body.Contact.ContactID}") AND '
            'Status!="DELETED" AND Status!="VOIDED"'
        )
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
