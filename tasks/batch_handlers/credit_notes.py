"""The batch handler of credit notes (kind `credit_notes`), with the invoice path's rules.

`tasks/credit_notes.apply_credit` raises `AwaitingBatch(CREDIT_NOTES, ...)`; a flush runs
`write_credit_notes`: one `PUT /CreditNotes` per flush under an Idempotency-Key, each element
marked until Xero's answer is stored; a suspect element is sent again under its key while Xero
keeps it, else looked up by its unique Reference before any late create.
"""

from __future__ import annotations

import hashlib

from clients.xero import quote
from schemas.errors import RetryableApiError, SyncError, ValidationFailed
from schemas.links import CREDIT_NOTE, CreditNoteLink, CreditNoteOutcome
from schemas.wire import dumps
from schemas.xero import XeroCreditNote
from tasks.batch_handlers.creates import send_claimed
from tasks.batch_handlers.elements import CreditNoteElement
from workers.batching import Element, Later, Results, batch_handler, flush_key, plan_unlinked
from workers.context import StageContext

CREDIT_NOTES = "credit_notes"
CREDIT_LINK = CREDIT_NOTE  # element id -> the credit note Xero created for it


@batch_handler(CREDIT_NOTES)
def write_credit_notes(ctx: StageContext, elements: list[Element]) -> Results:
    """Adopt what suspect elements already have in Xero (by Reference); create the rest in one
    call; the same rules as `tasks/batch_handlers/invoices.write_invoices`."""
    assert ctx.flush is not None, "a batch handler runs in a flush"
    conn, settings = ctx.connection.name, ctx.settings
    results: Results = {}
    known = ctx.idempotency.links(CREDIT_LINK, conn, [e.id for e in elements])
    results.update({eid: _outcome(link, "adopted") for eid, link in known.items()})
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
    results.update({eid: _outcome(link, "adopted") for eid, link in links.items()})
    ctx.flush.store(CREDIT_LINK, links, [*known, *links])
    again = {e.id for group in plan.resend.values() for e in group}
    new = [e for e in todo if e.id not in results and e.id not in again]
    requests = list(plan.resend.items())
    if new:
        requests.append((flush_key(CREDIT_NOTES, conn, new, ",".join(e.id for e in new)), new))
    results.update(
        send_claimed(
            ctx,
            CREDIT_LINK,
            requests,
            digests,
            frozenset(e.id for e in plan.lookup),
            lambda group, key: ctx.xero.create_credit_notes([_payload(e).body for e in group], key),
            _created,
            _refused,
        )
    )
    return results


def _created(element: Element, note: XeroCreditNote) -> tuple[CreditNoteLink, CreditNoteOutcome]:
    link = _link(note)
    return link, _outcome(link, "created")


def _outcome(link: CreditNoteLink, action: str) -> CreditNoteOutcome:
    return CreditNoteOutcome(**link.model_dump(), action=action)


def _refused(element: Element, errors: list[str]) -> SyncError:
    return ValidationFailed(
        "Xero",
        [f"{_payload(element).record}: {m}" for m in errors],
        hint="Fix the record (or the Xero setting named) and replay the dead letter.",
    )


def _link(note: XeroCreditNote) -> CreditNoteLink:
    return CreditNoteLink(
        CreditNoteID=note.CreditNoteID, CreditNoteNumber=note.CreditNoteNumber, Total=note.Total
    )


def _digest(element: Element) -> str:
    return hashlib.sha256(dumps(_payload(element).body).encode()).hexdigest()[:32]


def _earlier(
    ctx: StageContext, suspects: list[Element]
) -> tuple[dict[str, XeroCreditNote], dict[str, SyncError]]:
    """Credit notes earlier attempts created for these elements, by their unique Reference and
    contact (one lookup per URL-sized chunk); a failed lookup fails its elements, to be retried
    (never created blind)."""
    if not suspects:
        return {}, {}
    clauses = [f"Reference=={quote(str(_payload(e).reference))}" for e in suspects]
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
            if note.Reference == _payload(element).reference and (
                contact in (None, _payload(element).contact_id)
            ):
                earlier[element.id] = note
                break
    return earlier, {}


def _payload(element: Element) -> CreditNoteElement:
    return CreditNoteElement.model_validate(element.payload)
