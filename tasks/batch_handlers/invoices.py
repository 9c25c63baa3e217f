"""The batch handler of new invoices (kind `invoices`): up to 50 per request, exactly once.

Stage 4 (tasks/invoice_create.py) raises `AwaitingBatch(INVOICES, ...)`; a flush runs
`write_invoices`: links already stored are adopted, elements that may exist in Xero (a mark, a
retry, a redelivery, a replay) are sent again under their key while Xero keeps it or looked up,
and the rest are created with `summarizeErrors=false`, so a refused invoice fails alone.
"""

from __future__ import annotations

import hashlib

from schemas.errors import RetryableApiError, SyncError, ValidationFailed
from schemas.links import CONTACT, INVOICE, ITEM, InvoiceLink, InvoiceOutcome
from schemas.wire import dumps
from schemas.xero import XeroInvoice, XeroInvoiceIn
from tasks.batch_handlers.creates import send_claimed
from tasks.batch_handlers.elements import InvoiceElement
from workers.batching import Element, Later, Results, batch_handler, flush_key, plan_unlinked
from workers.context import StageContext

LINK = INVOICE
INVOICES = "invoices"


def invoice_link(invoice: XeroInvoice, version: str | None) -> InvoiceLink:
    """What the invoice link keeps of a Xero invoice (the stage and the handler write it;
    merged into a link with `merged`, these fields replace the link's)."""
    return InvoiceLink(
        InvoiceID=invoice.InvoiceID,
        InvoiceNumber=invoice.InvoiceNumber,
        Status=invoice.Status,
        Total=invoice.Total,
        Reference=invoice.Reference or "",
        version=version,
    )


@batch_handler(INVOICES)
def write_invoices(ctx: StageContext, elements: list[Element]) -> Results:
    """Adopt what suspect elements already have in Xero; create the rest in one call.

    An earlier request that got no answer is sent again with its own Idempotency-Key while
    Xero keeps it (workers/batching/suspects.py `plan_suspects`), else its elements are looked
    up, not sooner than the lookup margin. A suspect whose lookup failed is neither created nor
    given Xero's "not found": it is retried alone (with its own record in the message) and keeps
    its mark until a lookup succeeds."""
    assert ctx.flush is not None, "a batch handler runs in a flush"
    conn, settings = ctx.connection.name, ctx.settings
    results: Results = {}
    known = ctx.idempotency.links(LINK, conn, [e.id for e in elements])
    for element_id, link in known.items():
        results[element_id] = InvoiceOutcome(
            action="adopted", Total=link.Total, version=link.version
        )
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
    links: dict[str, InvoiceLink] = {}
    for element in todo:
        invoice = earlier.get(element.id)
        if invoice is not None:
            links[element.id] = invoice_link(invoice, _payload(element).version)
            results[element.id] = _outcome("adopted", invoice, element)
    ctx.flush.store(LINK, links, [*known, *links])  # adopted first: a failed create keeps them
    again = {e.id for group in plan.resend.values() for e in group}
    new = [e for e in todo if e.id not in results and e.id not in again]
    requests = list(plan.resend.items())
    if new:
        versions = ",".join(f"{e.id}@{_payload(e).version}" for e in new)
        requests.append((flush_key(INVOICES, conn, new, versions), new))
    results.update(
        send_claimed(
            ctx,
            LINK,
            requests,
            digests,
            frozenset(e.id for e in plan.lookup),
            lambda group, key: ctx.xero.create_invoices([_payload(e).body for e in group], key),
            _created,
            lambda element, errors: _refused(ctx, element, errors),
        )
    )
    return results


def _digest(element: Element) -> str:
    """The element's body as sent: a request is sent again under its key only unchanged."""
    return hashlib.sha256(dumps(_payload(element).body).encode()).hexdigest()[:32]


def _earlier(
    ctx: StageContext, suspects: list[Element]
) -> tuple[dict[str, XeroInvoice], dict[str, SyncError]]:
    """Invoices earlier attempts created for these elements (one lookup per URL-sized chunk),
    and the elements whose lookup failed, each with an error naming its own record."""
    lookups = {e.id: _payload(e).lookup for e in suspects}
    clauses = {eid: clause for eid, clause in lookups.items() if clause}
    found, failed = _lookup(ctx, clauses)
    earlier: dict[str, XeroInvoice] = {}
    for element in suspects:
        if element.id in failed:
            continue
        body = XeroInvoiceIn.model_validate(_payload(element).body)
        for invoice in found:
            same_number = body.InvoiceNumber and invoice.InvoiceNumber == body.InvoiceNumber
            same_reference = (
                not body.InvoiceNumber
                and invoice.Reference == body.Reference
                and invoice.Contact is not None
                and invoice.Contact.ContactID == body.Contact.ContactID
            )
            if same_number or same_reference:
                earlier[element.id] = invoice
                break
    records = {e.id: str(_payload(e).record) for e in suspects}
    return earlier, {eid: _lookup_failed(records[eid], exc) for eid, exc in failed.items()}


def _lookup(
    ctx: StageContext, clauses: dict[str, str]
) -> tuple[list[XeroInvoice], dict[str, SyncError]]:
    """One lookup for all clauses; a refused lookup is split in halves until the clause Xero
    refuses is alone, so one element's bad filter fails that element only. A transient failure
    (5xx, timeout) fails the elements of that call, to be retried."""
    if not clauses:
        return [], {}
    scope = 'Type=="ACCREC" AND Status!="DELETED" AND Status!="VOIDED"'
    try:
        return ctx.xero.find_invoices_any(list(clauses.values()), scope), {}
    except SyncError as exc:
        if exc.retryable or len(clauses) == 1:
            return [], dict.fromkeys(clauses, exc)
    ids = list(clauses)
    half = len(ids) // 2
    first = _lookup(ctx, {eid: clauses[eid] for eid in ids[:half]})
    second = _lookup(ctx, {eid: clauses[eid] for eid in ids[half:]})
    return first[0] + second[0], {**first[1], **second[1]}


def _lookup_failed(record: str, exc: SyncError) -> SyncError:
    """Never final: the element keeps its mark and is looked up again, never created blind."""
    return RetryableApiError(
        "Xero",
        f"{record}: could not look up whether an earlier attempt created it in Xero, so it is "
        f"not created again until a lookup succeeds ({exc.message})",
        hint="Retried automatically; a replay or the record's next event looks it up first.",
    )


def _created(element: Element, invoice: XeroInvoice) -> tuple[InvoiceLink, InvoiceOutcome]:
    return invoice_link(invoice, _payload(element).version), _outcome("created", invoice, element)


def _outcome(action: str, invoice: XeroInvoice, element: Element) -> InvoiceOutcome:
    """What a waiting stage learns: the action, Xero's total, and which content was written
    (a waiter that read a later edit of the record applies it after the create)."""
    return InvoiceOutcome(action=action, Total=invoice.Total, version=_payload(element).version)


def _refused(ctx: StageContext, element: Element, errors: list[str]) -> SyncError:
    """The element's own error; a cached link Xero says is stale is forgotten, so the replay
    looks the contact or item up again instead of sending the same stale id."""
    conn, text = ctx.connection.name, " ".join(errors)
    if "archived" in text:
        ctx.idempotency.forget_links(CONTACT, conn, [_payload(element).account_id])
    stale = [pid for pid, code in _payload(element).products.items() if f"'{code}'" in text]
    if stale and "Item code" in text:
        ctx.idempotency.forget_links(ITEM, conn, stale)
    return ValidationFailed(
        "Xero",
        [f"{_payload(element).record}: {m}" for m in errors],
        hint="Fix the record (or the Xero setting named) and replay the dead letter.",
    )


def _payload(element: Element) -> InvoiceElement:
    return InvoiceElement.model_validate(element.payload)
