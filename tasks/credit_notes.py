"""Credit notes for Zoho cancels and reductions Xero will not apply (issue 18), exactly once.

`invoice_create` calls `apply_credit` under the record's lock when the connection's
`paid_change` is "credit_note" and the Xero invoice has a payment or credit allocated. The plan
(schemas/credit_notes.py) is a pure function of the invoice as Xero holds it and of our earlier
credit notes (kept on the invoice link), so a run that is resumed, retried or replayed plans the
same credit note under the same element id (`{link id}@{content version}`, or `@cancel`).

Exactly once, with the invoice path's machinery (tasks/batch_handlers/credit_notes.py): the
credit notes of a connection are created in one `PUT /CreditNotes` per flush under an
Idempotency-Key, each element marked until Xero's answer is stored; a suspect element (a mark, a
retry, a redelivery, a replay) is sent again under its key while Xero keeps it, else looked up
by its unique Reference before any late create. The allocation is recorded on the invoice link
as pending before it is sent, and a pending allocation is checked on the credit note (its
Allocations) before it is sent again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from schemas.credit_notes import (
    CreditPlan,
    add_groups,
    credit_note_body,
    credit_reference,
    decode_groups,
    describe,
    encode_groups,
)
from schemas.errors import ValidationFailed
from schemas.links import INVOICE, CreditNoteOutcome, InvoiceLink, OurCreditNote
from schemas.xero import XeroInvoice
from tasks.batch_handlers.credit_notes import CREDIT_NOTES
from tasks.batch_handlers.elements import CreditNoteElement
from workers.batching import AwaitingBatch
from workers.context import StageContext
from workers.idempotency import idempotency_key

LINK = INVOICE  # the invoice link (tasks/invoice_create.py) keeps our credit notes


def our_notes(link: InvoiceLink) -> set[str]:
    """The CreditNoteIDs this integration raised against the invoice."""
    return {n.CreditNoteID for n in link.credit_notes}


def credited(link: InvoiceLink) -> dict[tuple[str, str], tuple[Decimal, Decimal]]:
    return decode_groups(link.credited)


def apply_credit(
    ctx: StageContext,
    record: str,
    link_id: str,
    link: InvoiceLink,
    invoice: XeroInvoice,
    plan: CreditPlan,
    element_id: str,
    suspect: bool,
) -> tuple[InvoiceLink, str]:
    """Raise the plan's credit note (batched; raises AwaitingBatch until the flush answered),
    then allocate it; the invoice link with the note on it, and what the Zoho record is told."""
    outcome = ctx.batch_outcome(element_id, CreditNoteOutcome)
    if outcome is None:
        assert invoice.Contact is not None, "an ACCREC invoice has a contact"
        reference = credit_reference(invoice.InvoiceNumber, element_id)
        body = credit_note_body(
            plan, invoice, invoice.Contact.ContactID, reference, datetime.now(UTC).date()
        )
        payload = CreditNoteElement(
            record=record,
            body=body.body(),
            reference=reference,
            contact_id=invoice.Contact.ContactID,
            suspect=suspect,
        ).wire()
        raise AwaitingBatch(CREDIT_NOTES, {element_id: payload})
    if outcome.Total != plan.total:
        raise ValidationFailed(
            "Xero",
            [
                f"{record}: credit note {outcome.CreditNoteNumber} totals {outcome.Total} "
                f"in Xero, {plan.total} was planned from Zoho's figures"
            ],
            hint="Check the credit note in Xero (void it if wrong) and replay the dead letter.",
        )
    note = OurCreditNote(
        CreditNoteID=outcome.CreditNoteID,
        CreditNoteNumber=outcome.CreditNoteNumber,
        element=element_id,
        allocate=plan.allocate,
        allocated=plan.allocate == 0,
        text=describe(plan, str(outcome.CreditNoteNumber), invoice.InvoiceNumber),
    )
    link = link.model_copy(
        update={
            "credited": encode_groups(add_groups(credited(link), plan.groups)),
            "LineAmountTypes": invoice.LineAmountTypes,
            "credit_notes": [*link.credit_notes, note],
        }
    )
    # the note is ours before its allocation is sent: a rerun finds the allocation pending
    ctx.idempotency.set_links(LINK, ctx.connection.name, {link_id: link})
    fresh = {note.CreditNoteID} if outcome.action == "created" else set()
    return allocate_pending(ctx, link, invoice.InvoiceID, fresh), note.text


def allocate_pending(
    ctx: StageContext, link: InvoiceLink, invoice_id: str, fresh: set[str] | None = None
) -> InvoiceLink:
    """Send the allocations of our credit notes not yet known done. A note just created here
    (`fresh`) has none; any other is read first, and one whose Allocations already name the
    invoice (an earlier run's allocation) is not sent again."""
    notes = []
    for note in link.credit_notes:
        if not note.allocated:
            note_id = note.CreditNoteID
            done = note_id not in (fresh or set()) and any(
                a.Invoice and a.Invoice.InvoiceID == invoice_id
                for a in ctx.xero.get_credit_note(note_id).Allocations
            )
            if not done:
                key = idempotency_key("credit-allocation", ctx.connection.name, note.element)
                ctx.xero.allocate_credit_note(
                    note_id, invoice_id, note.allocate, datetime.now(UTC).date(), key
                )
            note = note.model_copy(update={"allocated": True})
        notes.append(note)
    return link.model_copy(update={"credit_notes": notes})
