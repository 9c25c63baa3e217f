"""Payment feedback, Xero -> Zoho: payment status, amounts and the customer's balances.

Two ways in, one writer (`feed_back`):
- `zxsync.payment_feedback`: a job from the relay for the invoices a Xero webhook named (a
  payment is an INVOICE UPDATE). An invoice the pipeline has not linked yet (the webhook can beat
  the link) is retried alone with a countdown; after the last retry it is left to later events.
- `zxsync.payment_reconcile`: a beat task per connection that pages through the invoices Xero
  changed since a high-water mark (`If-Modified-Since`), so a lost webhook is caught within the
  interval. The paged answer already holds every invoice in full, so it feeds them back inline
  instead of enqueuing jobs that would read them from Xero again. The mark moves only after
  Zoho took the updates; invoices of the mark's second come back and are no-ops.

Ordering: events and polls race, so the invoice's Xero `UpdatedDateUTC` is kept per invoice and
an older read never overwrites a newer one; balances do not move any UpdatedDateUTC (FACTS), so
an account keeps the time its balances were read instead. The comparison and the Zoho write run
under one lock per connection. Only fields that differ from what was last written are sent, up
to 100 records per Zoho call.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from schemas.errors import InvalidJob, NotLinkedYet
from schemas.payments import (
    FEEDBACK_TASK,
    INVOICE_REVERSE_LINK,
    MAX_INVOICES_PER_JOB,
    PaymentFeedbackJob,
    account_fields,
    changed_fields,
    invoice_fields,
)
from schemas.xero import XeroBalances, XeroInvoice
from workers.app import app
from workers.context import StageContext, build_context
from workers.history import record_key
from workers.logs import log
from workers.retry import retry_countdown
from workers.settings import get_settings
from workers.stage import StageTask

RECONCILE_TASK = "zxsync.payment_reconcile"
INVOICE_STATE = "payment_invoice"  # Xero InvoiceID -> {"mark": UpdatedDateUTC, "fields": ...}
ACCOUNT_STATE = "payment_account"  # Zoho account id -> {"mark": balances read at, "fields": ...}


@app.task(name=FEEDBACK_TASK, base=StageTask, bind=True, max_retries=get_settings().zxs_max_retries)
def payment_feedback(task: StageTask, payload: Any) -> int:
    """Feed back the job's invoices; returns the Zoho records written."""
    try:
        job = PaymentFeedbackJob.model_validate(payload)
    except ValidationError as exc:
        raise InvalidJob(f"payment feedback job rejected: {exc}", field="invoice_ids") from None
    ctx = task.context_for(job.connection)
    invoices = ctx.xero.invoices({"IDs": ",".join(job.invoice_ids)})
    written, waiting = feed_back(ctx, invoices)
    if not waiting:
        return written
    unlinked = NotLinkedYet(f"Xero invoices {', '.join(waiting)} are not linked to Zoho yet")
    if task.request.retries >= task.max_retries:
        log.info("payment_feedback.unlinked", connection=job.connection, invoices=waiting)
        return written
    backoff_max = ctx.settings.zxs_retry_backoff_max
    countdown = retry_countdown(unlinked, task.request.retries, backoff_max)
    narrowed = job.model_copy(update={"invoice_ids": waiting}).model_dump()
    raise task.retry(args=[narrowed], exc=unlinked, countdown=countdown)


@app.task(name=RECONCILE_TASK)
def payment_reconcile(connection: str | None = None) -> int:
    """Beat entry: without a connection, start one reconciliation per connection."""
    if connection is None:
        for name in get_settings().connections():
            app.send_task(RECONCILE_TASK, args=[name])
        return 0
    return reconcile(build_context(connection))


def reconcile(ctx: StageContext) -> int:
    """Feed back every ACCREC invoice Xero changed since the mark; the Zoho records written."""
    conn = ctx.connection.name
    mark_key = f"zxs:payments:reconcile:{conn}"
    mark = ctx.redis.get(mark_key)
    since = datetime.fromisoformat(str(mark)) if mark else None
    invoices = ctx.xero.invoices({"where": 'Type=="ACCREC"'}, since)
    written = 0
    for start in range(0, len(invoices), MAX_INVOICES_PER_JOB):
        written += feed_back(ctx, invoices[start : start + MAX_INVOICES_PER_JOB])[0]
    stamps = [i.UpdatedDateUTC for i in invoices if i.UpdatedDateUTC]
    if stamps:
        ctx.redis.set(mark_key, max(stamps).isoformat())
    log.info("payment_reconcile", connection=conn, seen=len(invoices), written=written)
    return written


def feed_back(ctx: StageContext, invoices: list[XeroInvoice]) -> tuple[int, list[str]]:
    """Write what changed to Zoho; (records written, invoice ids not linked yet)."""
    conn = ctx.connection.name
    invoices = [i for i in invoices if i.Type in (None, "ACCREC")]
    links = ctx.idempotency.links(INVOICE_REVERSE_LINK, conn, [i.InvoiceID for i in invoices])
    waiting = [i.InvoiceID for i in invoices if i.InvoiceID not in links]
    linked = [i for i in invoices if i.InvoiceID in links]
    if not linked:
        return 0, waiting
    accounts = {
        i.Contact.ContactID: str(links[i.InvoiceID]["account_id"]) for i in linked if i.Contact
    }
    read_at = time.time()  # before the read: a later read cannot see an older state
    balances = {c.ContactID: c.Balances for c in ctx.xero.contacts(list(accounts))}
    credit = _credit(ctx, list(accounts))
    updates: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with ctx.idempotency.lock(f"payments:{conn}"):
        invoice_states = _fresh_invoices(ctx, linked, links, updates)
        account_states = _fresh_accounts(ctx, accounts, balances, credit, read_at, updates)
        for module, records in updates.items():
            ctx.zoho.update_records(module, records)
        ctx.idempotency.set_links(INVOICE_STATE, conn, invoice_states)
        ctx.idempotency.set_links(ACCOUNT_STATE, conn, account_states)
    for module, records in updates.items():
        for record in records:
            key = record_key(conn, module, str(record["id"]))
            fields = {k: str(v) for k, v in record.items() if k != "id"}
            ctx.history.log(key, FEEDBACK_TASK, "payment_feedback", **fields)
    return sum(len(r) for r in updates.values()), waiting


def _fresh_invoices(
    ctx: StageContext,
    invoices: list[XeroInvoice],
    links: dict[str, dict[str, Any]],
    updates: dict[str, list[dict[str, Any]]],
) -> dict[str, dict[str, Any]]:
    """Queue the changed fields of invoices read no earlier than the last write; new states."""
    conn = ctx.connection.name
    states = ctx.idempotency.links(INVOICE_STATE, conn, [i.InvoiceID for i in invoices])
    fresh: dict[str, dict[str, Any]] = {}
    for invoice in invoices:
        state = states.get(invoice.InvoiceID)
        stamp = invoice.UpdatedDateUTC or datetime.now(UTC)  # Xero always sends it
        if state and datetime.fromisoformat(state["mark"]) > stamp:
            log.info("payment_feedback.stale", connection=conn, invoice=invoice.InvoiceID)
            continue
        fields = invoice_fields(invoice)
        diff = changed_fields(fields, state["fields"] if state else None)
        link = links[invoice.InvoiceID]
        if diff:
            updates[str(link["module"])].append({"id": link["record_id"], **diff})
        fresh[invoice.InvoiceID] = {"mark": stamp.isoformat(), "fields": fields}
    return fresh


def _fresh_accounts(
    ctx: StageContext,
    accounts: dict[str, str],
    balances: dict[str, XeroBalances | None],
    credit: dict[str, Decimal],
    read_at: float,
    updates: dict[str, list[dict[str, Any]]],
) -> dict[str, dict[str, Any]]:
    """Queue the changed balance fields of accounts not written from a later read."""
    conn = ctx.connection.name
    states = ctx.idempotency.links(ACCOUNT_STATE, conn, list(set(accounts.values())))
    fresh: dict[str, dict[str, Any]] = {}
    for contact_id, account_id in accounts.items():
        state = states.get(account_id)
        if contact_id not in balances or (state and state["mark"] > read_at):
            continue
        fields = account_fields(
            balances[contact_id] or XeroBalances(),
            credit.get(contact_id, Decimal(0)),
            ctx.connection.credit_hold_overdue,
        )
        diff = changed_fields(fields, state["fields"] if state else None)
        if diff:
            updates["Accounts"].append({"id": account_id, **diff})
        fresh[account_id] = {"mark": read_at, "fields": fields}
    return fresh


def _credit(ctx: StageContext, contact_ids: list[str]) -> dict[str, Decimal]:
    """Unallocated credit per contact: RemainingCredit of its AUTHORISED ACCREC credit notes."""
    credit: dict[str, Decimal] = defaultdict(Decimal)
    clauses = [f'Contact.ContactID==guid("{c}")' for c in contact_ids]
    scope = 'Type=="ACCRECCREDIT" AND Status=="AUTHORISED"'
    # the client splits the contacts into calls whose URLs fit Xero's limit
    for note in ctx.xero.credit_notes_any(clauses, scope) if clauses else []:
        if note.Contact is not None:
            credit[note.Contact.ContactID] += note.RemainingCredit
    return credit
