"""Credit notes for Zoho cancels and reductions Xero will not apply (issue 18), exactly once.

`invoice_create` calls `apply_credit` under the record's lock when the connection's
`paid_change` is "credit_note" and the Xero invoice has a payment or credit allocated. The plan
(schemas/credit_notes.py) is a pure function of the invoice as Xero holds it and of our earlier
credit notes (kept on the invoice link), so a run that is resumed, retried or replayed plans the
same credit note under the same element id (`{link id}@{content version}`, or `@cancel`).

Exactly once, with the invoice path's machinery (workers/batching.py): the credit notes of a
connection are created in one `PUT /CreditNotes` per flush under an Idempotency-Key, each element
marked until Xero's answer is stored; a suspect element (a mark, a retry, a redelivery, a replay)
is sent again under its key while Xero keeps it, else looked up by its unique Reference before
any late create. The allocation is recorded on the invoice link as pending before it is sent,
and a pending allocation is checked on the credit note (its Allocations) before it is sent again.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from clients.xero import quote
from schemas.credit_notes import (
    CreditPlan,
    add_groups,
    credit_note_body,
    credit_reference,
    decode_groups,
    describe,
    encode_groups,
)
from schemas.errors import RetryableApiError, SyncError, ValidationFailed
from schemas.wire import dumps
from schemas.xero import XeroCreditNote, XeroInvoice
from workers.batching import (
    AwaitingBatch,
    Element,
    Later,
    Results,
    batch_handler,
    flush_key,
    plan_unlinked,
)
from workers.context import StageContext
from workers.idempotency import idempotency_key

CREDIT_NOTES = "credit_notes"
CREDIT_LINK = "credit_note"  # element id -> the credit note Xero created for it
LINK = "invoice"  # the invoice link (tasks/invoice_create.py) keeps our credit notes


def our_notes(link: dict[str, Any]) -> set[str]:
    """The CreditNoteIDs this integration raised against the invoice."""
    return {str(n["CreditNoteID"]) for n in link.get("credit_notes", [])}


def credited(link: dict[str, Any]) -> dict[tuple[str, str], tuple[Decimal, Decimal]]:
    return decode_groups(link.get("credited"))


def apply_credit(
    ctx: StageContext,
    record: str,
    link_id: str,
    link: dict[str, Any],
    invoice: XeroInvoice,
    plan: CreditPlan,
    element_id: str,
    suspect: bool,
) -> tuple[dict[str, Any], str]:
    """Raise the plan's credit note (batched; raises AwaitingBatch until the flush answered),
    then allocate it; the invoice link with the note on it, and what the Zoho record is told."""
    outcome = ctx.batch_outcome(element_id)
    if outcome is None:
        assert invoice.Contact is not None, "an ACCREC invoice has a contact"
        reference = credit_reference(invoice.InvoiceNumber, element_id)
        body = credit_note_body(
            plan, invoice, invoice.Contact.ContactID, reference, datetime.now(UTC).date()
        )
        payload = {
            "record": record,
            "body": body.body(),
            "reference": reference,
            "contact_id": invoice.Contact.ContactID,
            "suspect": suspect,
        }
        raise AwaitingBatch(CREDIT_NOTES, {element_id: payload})
    if Decimal(str(outcome["Total"])) != plan.total:
        raise ValidationFailed(
            "Xero",
            [f"{record}: credit note {outcome['CreditNoteNumber']} totals {outcome['Total']} "
             f"in Xero, {plan.total} was planned from Zoho's figures"],
            hint="Check the credit note in Xero (void it if wrong) and replay the dead letter.",
        )
    note = {
        "CreditNoteID": outcome["CreditNoteID"],
        "CreditNoteNumber": outcome["CreditNoteNumber"],
        "element": element_id,
        "allocate": str(plan.allocate),
        "allocated": plan.allocate == 0,
        "text": describe(plan, str(outcome["CreditNoteNumber"]), invoice.InvoiceNumber),
    }
    link = {
        **link,
        "credited": encode_groups(add_groups(credited(link), plan.groups)),
        "LineAmountTypes": invoice.LineAmountTypes,
        "credit_notes": [*link.get("credit_notes", []), note],
    }
    # the note is ours before its allocation is sent: a rerun finds the allocation pending
    ctx.idempotency.set_links(LINK, ctx.connection.name, {link_id: link})
    fresh = {str(note["CreditNoteID"])} if outcome.get("action") == "created" else set()
    return allocate_pending(ctx, link, invoice.InvoiceID, fresh), str(note["text"])


def allocate_pending(
    ctx: StageContext, link: dict[str, Any], invoice_id: str, fresh: set[str] | None = None
) -> dict[str, Any]:
    """Send the allocations of our credit notes not yet known done. A note just created here
    (`fresh`) has none; any other is read first, and one whose Allocations already name the
    invoice (an earlier run's allocation) is not sent again."""
    notes = []
    for note in link.get("credit_notes", []):
        if not note["allocated"]:
            note_id = str(note["CreditNoteID"])
            done = note_id not in (fresh or set()) and any(
                a.Invoice and a.Invoice.InvoiceID == invoice_id
                for a in ctx.xero.get_credit_note(note_id).Allocations
            )
            if not done:
                key = idempotency_key("credit-allocation", ctx.connection.name, note["element"])
                ctx.xero.allocate_credit_note(
                    note_id, invoice_id, Decimal(str(note["allocate"])),
                    datetime.now(UTC).date(), key,
                )
            note = {**note, "allocated": True}
        notes.append(note)
    return {**link, "credit_notes": notes}


@batch_handler(CREDIT_NOTES)
def write_credit_notes(ctx: StageContext, elements: list[Element]) -> Results:
    """Adopt what suspect elements already have in Xero (by Reference); create the rest in one
    call; the same rules as `tasks/invoice_create.write_invoices`."""
    assert ctx.flush is not None, "a batch handler runs in a flush"
    conn, settings = ctx.connection.name, ctx.settings
    results: Results = {}
    known = ctx.idempotency.links(CREDIT_LINK, conn, [e.id for e in elements])
    results.update({eid: {**link, "action": "adopted"} for eid, link in known.items()})
    todo, digests, plan = plan_unlinked(
        elements,
        known,
        _digest,
        settings.zxs_idempotency_window_seconds,
        settings.zxs_lookup_margin_seconds,
    )
    results.update({eid: Later(until) for eid, until in plan.later.items()})
    earlier, failed = _earlier(ctx, plan.lookup)
    results.update(failed)
    links = {eid: _link(note) for eid, note in earlier.items()}
    results.update({eid: {**link, "action": "adopted"} for eid, link in links.items()})
    ctx.flush.store(CREDIT_LINK, links, [*known, *links])
    again = {e.id for group in plan.resend.values() for e in group}
    new = [e for e in todo if e.id not in results and e.id not in again]
    requests = list(plan.resend.items())
    if new:
        requests.append((flush_key(CREDIT_NOTES, conn, new, ",".join(e.id for e in new)), new))
    looked_up = frozenset(e.id for e in plan.lookup)
    for key, claimed in requests:
        refused = ctx.flush.sending(
            claimed,
            key,
            {e.id: digests[e.id] for e in claimed},
            claim=CREDIT_LINK,
            looked_up=looked_up,
            margin=settings.zxs_lookup_margin_seconds,
        )
        # another create holds the claim: back as suspects, adopted or looked up after it
        results.update(
            {eid: Later(time.time() + settings.zxs_lookup_margin_seconds) for eid in refused}
        )
        group = [e for e in claimed if e.id not in refused]
        if not group:
            continue
        answers = ctx.xero.create_credit_notes([e.payload["body"] for e in group], key)
        links, settled = {}, []
        for element, (note, errors) in zip(group, answers, strict=True):
            settled.append(element.id)
            if note is None:
                results[element.id] = ValidationFailed(
                    "Xero", [f"{element.payload['record']}: {m}" for m in errors],
                    hint="Fix the record (or the Xero setting named) and replay the dead letter.",
                )
            else:
                links[element.id] = _link(note)
                results[element.id] = {**links[element.id], "action": "created"}
        ctx.flush.store(CREDIT_LINK, links, settled)
    return results


def _link(note: XeroCreditNote) -> dict[str, Any]:
    return {
        "CreditNoteID": note.CreditNoteID,
        "CreditNoteNumber": note.CreditNoteNumber,
        "Total": str(note.Total),
    }


def _digest(element: Element) -> str:
    return hashlib.sha256(dumps(element.payload["body"]).encode()).hexdigest()[:32]


def _earlier(
    ctx: StageContext, suspects: list[Element]
) -> tuple[dict[str, XeroCreditNote], dict[str, SyncError]]:
    """Credit notes earlier attempts created for these elements, by their unique Reference and
    contact (one lookup per URL-sized chunk); a failed lookup fails its elements, to be retried
    (never created blind)."""
    if not suspects:
        return {}, {}
    clauses = [f"Reference=={quote(str(e.payload['reference']))}" for e in suspects]
    scope = 'Type=="ACCRECCREDIT" AND Status!="DELETED" AND Status!="VOIDED"'
    try:
        found = ctx.xero.credit_notes_any(clauses, scope)
    except SyncError as exc:
        error = RetryableApiError(
            "Xero",
            f"could not look up whether an earlier attempt created the credit note, so it is "
            f"not created again until a lookup succeeds ({exc.message})",
            hint="Retried automatically.",
        )
        return {}, {e.id: error for e in suspects}
    earlier: dict[str, XeroCreditNote] = {}
    for element in suspects:
        for note in found:
            contact = note.Contact.ContactID if note.Contact else None
            if note.Reference == element.payload["reference"] and (
                contact in (None, element.payload["contact_id"])
            ):
                earlier[element.id] = note
                break
    return earlier, {}
