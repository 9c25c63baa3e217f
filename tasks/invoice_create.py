"""Stage 4: create the Xero ACCREC invoice exactly once, then keep it in step with Zoho.

New invoices of a tenant are created up to 50 per request (tasks/batch_handlers/invoices.py)
with `summarizeErrors=false`: a refused invoice is dead-lettered alone, the rest are created.

Guards against duplicates, strongest first: the stored link (a second run finds the invoice),
the mark a create leaves on its elements until Xero's answer is stored
(workers/batching/fence.py `Flush`), and, for an element that may exist in Xero (a mark, a
retry, redelivery, replay, or a batch whose flusher died), either the same request again under
its Idempotency-Key while Xero keeps it (6 minutes) or a lookup before any create.

A document converted from a quote or sales order already in Xero adopts that invoice (one Xero
invoice per sale). An edit updates the invoice while Xero allows it; a cancelled or deleted Zoho
document voids (AUTHORISED) or deletes (DRAFT/SUBMITTED) it. What Xero refuses is a permanent
error, so it becomes an exception report, never a silent skip.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from clients.xero import quote
from schemas.credit_notes import PAID_HINT, groups_total, plan_cancel, plan_reduction
from schemas.errors import (
    InvalidRecord,
    TotalDiffers,
    ValidationFailed,
)
from schemas.history import HistoryEvent
from schemas.jobs import ContactedSale, SaleToCancel, StageMessage, ToInvoice
from schemas.links import CreditNoteOutcome, InvoiceLink, InvoiceOutcome, TotalPair
from schemas.mapping import MappedInvoice, map_invoice, product_code
from schemas.xero import XeroInvoice, XeroInvoiceIn, XeroInvoiceStatusChange
from tasks.batch_handlers.elements import InvoiceElement
from tasks.batch_handlers.invoices import INVOICES, LINK, invoice_link
from tasks.credit_notes import allocate_pending, apply_credit, credited, our_notes
from tasks.tax_rates import tax_rates
from workers.batching import AwaitingBatch
from workers.context import StageContext
from workers.idempotency import idempotency_key
from workers.stage import stage

MSG_PAID = "has a payment or credit note allocated"  # Xero's refusal to edit (FACTS)


@stage("zxsync.invoice_create")
def invoice_create(msg: ToInvoice, ctx: StageContext) -> StageMessage:
    """Create, update or cancel the Xero invoice of a Zoho quote, sales order or invoice."""
    job = msg.job
    link_id = f"{job.module}:{job.record_id}"
    if isinstance(msg, SaleToCancel):
        with ctx.idempotency.lock(f"invoice:{job.connection}:{link_id}"):
            return _cancel(msg, ctx, link_id)
    doc = msg.document
    products = {p.id: p for p in msg.products}
    mapped = map_invoice(
        job.module, doc, msg.xero_contact_id, products, ctx.connection, tax_rates(ctx)
    )
    for decision in mapped.decisions:
        ctx.history.log(
            f"{job.connection}:{link_id}", "mapping", HistoryEvent.DECISION, detail=decision
        )
    with ctx.idempotency.lock(f"invoice:{job.connection}:{link_id}"):
        link = ctx.idempotency.link(LINK, job.connection, link_id)
        if link is None and msg.converted_from:
            link = ctx.idempotency.link(LINK, job.connection, msg.converted_from)
            ctx.history.log(
                f"{job.connection}:{link_id}",
                "invoice_create",
                HistoryEvent.CONVERTED,
                detail=f"adopts the Xero invoice of {msg.converted_from}",
            )
        if link is None:
            raise AwaitingBatch(INVOICES, {link_id: _element(msg, ctx, mapped)})
        created = ctx.batch_outcome(link_id, InvoiceOutcome)
        total: Decimal | None = None
        credit_text: str | None = None
        if created is not None and created.version != mapped.content_version:
            # the flush created what an earlier job read: this job's edit came while that
            # create was in flight, so it is applied now (the link holds the created version)
            created = None
        if created is not None:
            action = created.action
            total = created.Total
        elif link.version == mapped.content_version:
            action = "unchanged"
        else:
            action = "updated"
            credit_id = f"{link_id}@{mapped.content_version}"
            by_credit = ctx.connection.paid_change == "credit_note"
            if by_credit and (link.credit_notes or ctx.batch_outcome(credit_id, CreditNoteOutcome)):
                link, total, credit_text = _credit_reduction(msg, ctx, link_id, link, mapped)
            else:
                key = idempotency_key(
                    "invoice-update", job.connection, link_id, mapped.content_version
                )
                try:
                    invoice = ctx.xero.update_invoice(link.InvoiceID, mapped.invoice.body(), key)
                except ValidationFailed as exc:
                    if not (by_credit and MSG_PAID in exc.message):
                        raise
                    link, total, credit_text = _credit_reduction(msg, ctx, link_id, link, mapped)
                else:
                    total = invoice.Total
                    # keep what later stages noted (e.g. that it was sent)
                    link = link.merged(invoice_link(invoice, mapped.content_version))
        if total is None and link.Total:
            # unchanged: judged on what Xero holds, less our credit notes
            total = link.Total - credited_total(link)
        link, differs = judge_total(link, doc.grand_total, total)
        # a converted document keeps the adopted invoice under its own id too
        ctx.idempotency.set_links(LINK, job.connection, {link_id: link})
    if differs is not None:
        record = f"{job.module} {job.record_id}"
        assert total is not None
        raise TotalDiffers(record, doc.grand_total, total, str(link.InvoiceNumber), action)
    if link.accepted_total:
        ctx.history.log(
            f"{job.connection}:{link_id}",
            "invoice_create",
            HistoryEvent.TOTAL_ACCEPTED,
            detail=f"Xero total {link.accepted_total.xero} accepted for Zoho "
            f"{link.accepted_total.zoho}",
        )
    return msg.model_copy(
        update={
            "content_version": mapped.content_version,
            "xero_invoice_id": link.InvoiceID,
            "xero_invoice_number": link.InvoiceNumber,
            "xero_invoice_status": link.Status,
            "xero_action": action,
            "xero_credit_note": credit_text,
        }
    )


def _credit_reduction(
    msg: ContactedSale, ctx: StageContext, link_id: str, link: InvoiceLink, mapped: MappedInvoice
) -> tuple[InvoiceLink, Decimal, str | None]:
    """A Zoho reduction of an invoice Xero will not edit (paid or credited): a credit note for
    the difference (`paid_change: "credit_note"`). The link, the net total, the Zoho note."""
    job, doc = msg.job, msg.document
    record = f"{job.module} {job.record_id}"
    link, current = _settled_invoice(ctx, link_id, link)
    plan = plan_reduction(
        record, current, mapped.lines, doc.grand_total, credited(link), our_notes(link)
    )
    if plan is None:
        raise InvalidRecord(
            record,
            "Invoiced_Items",
            f"changed after Xero invoice {current.InvoiceNumber} was paid or credited, but not "
            f"its total; Xero does not edit it",
            hint="Make the change in Xero by hand if it matters there.",
        )
    credit_id = f"{link_id}@{mapped.content_version}"
    suspect = ctx.attempt > 0 or ctx.redelivered or job.event == "replay"
    link, text = apply_credit(ctx, record, link_id, link, current, plan, credit_id, suspect)
    status = "PAID" if plan.allocate == current.AmountDue else current.Status
    link = link.merged(invoice_link(current, mapped.content_version))
    link = link.model_copy(update={"Status": status})
    return link, current.Total - credited_total(link), text


def _settled_invoice(
    ctx: StageContext, link_id: str, link: InvoiceLink, current: XeroInvoice | None = None
) -> tuple[InvoiceLink, XeroInvoice]:
    """The invoice as Xero holds it (`current` when just read), after any allocation an earlier
    run left pending (a run cut off between its credit note and the allocation)."""
    current = current or ctx.xero.get_invoice(link.InvoiceID)
    if any(not n.allocated for n in link.credit_notes):
        link = allocate_pending(ctx, link, current.InvoiceID)
        ctx.idempotency.set_links(LINK, ctx.connection.name, {link_id: link})
        current = ctx.xero.get_invoice(link.InvoiceID)
    return link, current


def credited_total(link: InvoiceLink) -> Decimal:
    """What our credit notes took off the invoice (its link keeps them per account and tax)."""
    return groups_total(credited(link), link.LineAmountTypes)


def judge_total(
    link: InvoiceLink, zoho_total: Decimal, xero_total: Decimal | None
) -> tuple[InvoiceLink, TotalPair | None]:
    """Pure: the link with the verdict on Xero's total kept on it, and the difference if it
    stands. A total judged wrong is judged again on every event (the link remembers it), so an
    "unchanged" event never turns it Synced; it stands until the totals agree, or until someone
    accepted exactly this pair (`zxsync dlq accept-total`)."""
    if xero_total is None or xero_total == zoho_total:
        return link.model_copy(update={"total_differs": None, "accepted_total": None}), None
    pair = TotalPair(zoho=str(zoho_total), xero=str(xero_total))
    link = link.model_copy(update={"total_differs": pair})
    return link, None if link.accepted_total == pair else pair


def _cancel(msg: SaleToCancel, ctx: StageContext, link_id: str) -> StageMessage:
    """Void an AUTHORISED invoice, delete a DRAFT/SUBMITTED one; a paid or credited one gets a
    credit note (`paid_change: "credit_note"`) or needs a person."""
    job = msg.job
    link = ctx.idempotency.link(LINK, job.connection, link_id)
    assert link is not None, "fetch_record cancels linked documents only"
    current = ctx.xero.get_invoice(link.InvoiceID)
    action = "unchanged"
    credit_text: str | None = None
    settled = current.AmountPaid > 0 or current.AmountCredited > 0 or link.credit_notes
    if settled and ctx.connection.paid_change == "credit_note":
        link, current, credit_text = _credit_cancel(msg, ctx, link_id, link, current)
        action = "voided"
    elif current.Status in ("DRAFT", "SUBMITTED", "AUTHORISED"):
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
            hint=PAID_HINT,
        )
    link = link.merged(invoice_link(current, link.version))
    ctx.idempotency.set_links(LINK, job.connection, {link_id: link})
    return msg.model_copy(
        update={
            "xero_invoice_id": current.InvoiceID,
            "xero_invoice_number": current.InvoiceNumber,
            "xero_invoice_status": current.Status,
            "xero_action": action,
            "xero_credit_note": credit_text,
        }
    )


def _credit_cancel(
    msg: StageMessage, ctx: StageContext, link_id: str, link: InvoiceLink, read: XeroInvoice
) -> tuple[InvoiceLink, XeroInvoice, str | None]:
    """Cancel a paid or credited invoice with a credit note for all still invoiced: what is
    owed is allocated to the invoice (it closes), the paid part is left as customer credit."""
    job = msg.job
    record = f"{job.module} {job.record_id}"
    link, current = _settled_invoice(ctx, link_id, link, read)
    plan = plan_cancel(record, current, credited(link), our_notes(link))
    if plan is None:  # credited in full already: an earlier run's cancel
        return link, current, None
    suspect = ctx.attempt > 0 or ctx.redelivered or job.event == "replay"
    link, text = apply_credit(
        ctx, record, link_id, link, current, plan, f"{link_id}@cancel", suspect
    )
    if plan.allocate == current.AmountDue:  # nothing left owing: Xero marks it paid
        current = current.model_copy(update={"Status": "PAID", "AmountDue": Decimal(0)})
    return link, current, text


def _element(msg: ContactedSale, ctx: StageContext, mapped: MappedInvoice) -> dict[str, Any]:
    """What the flush needs to create this invoice, or find one an earlier attempt created."""
    job, body = msg.job, mapped.invoice
    return InvoiceElement(
        record=f"{job.module} {job.record_id}",
        body=body.body(),
        version=mapped.content_version,
        lookup=_same_invoice(body),
        # Xero may have created it already and forgotten the key (6 minutes): look first
        suspect=ctx.attempt > 0 or ctx.redelivered or job.event == "replay",
        account_id=msg.document.account.id,
        products={p.id: product_code(p) for p in msg.products},
    ).wire()


def _same_invoice(body: XeroInvoiceIn) -> str | None:
    """A filter for the invoice an earlier attempt made: by InvoiceNumber when we set it (unique
    per organisation), else by Reference and contact."""
    if body.InvoiceNumber:
        return f"InvoiceNumber=={quote(body.InvoiceNumber)}"
    if body.Reference:
        contact = f'Contact.ContactID==guid("{body.Contact.ContactID}")'
        return f"(Reference=={quote(body.Reference)} AND {contact})"
    return None
