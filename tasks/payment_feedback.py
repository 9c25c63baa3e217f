"""Payment feedback, Xero -> Zoho: payment status, amounts and the customer's balances.

Two ways in, one writer (`feed_back`):
- `zxsync.payment_feedback`: a job from the relay for the invoices a Xero webhook named (a
  payment is an INVOICE UPDATE). An invoice the pipeline has not linked yet (the webhook can beat
  the link) is retried alone with a countdown; after the last retry it is left to later events.
- `zxsync.payment_reconcile`: a safety-net poll per connection that pages through the invoices
  Xero changed since a high-water mark (`If-Modified-Since`), so a lost webhook is caught within
  the poll's interval, which backs off while the poll catches nothing (workers/polling.py).
  The paged answer already holds every invoice in full, so it feeds them back inline
  instead of enqueuing jobs that would read them from Xero again. The mark moves only after
  Zoho took the updates; invoices of the mark's second come back and are no-ops.

Ordering: events and polls race, so the invoice's Xero `UpdatedDateUTC` is kept per invoice and
an older read never overwrites a newer one; balances do not move any UpdatedDateUTC (FACTS), so
an account keeps the time its balances were read instead. The comparison and the Zoho write run
under one lock per connection. Only fields that differ from what was last written are sent, up
to 100 records per Zoho call.

One odd answer stops nothing else (issue 21): an invoice the model refuses is read again alone
and only it fails; a record Zoho refuses fails alone and is written again next time (its state
is not saved); the optional lookups (balances, credit notes) that answer 404 or something odd
leave their fields unwritten (an unknown credit is never written as 0); a transient error there
is raised after the rest was written, so the job is retried for what is missing.

CREDITNOTE webhooks (2026): the job names credit notes; the invoices they are allocated to are
fed back (amounts due), and their contacts' credit balances, for contacts whose Zoho account is
known from a linked invoice (`payment_contact`, learnt by every feedback).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import Any, Literal, NamedTuple, TypeVar

import redis
from pydantic import ValidationError

from clients.zoho import MAX_RECORDS_PER_CALL
from schemas.errors import ApiError, AuthRevoked, InvalidJob, MissingScope, NotLinkedYet, SyncError
from schemas.history import HistoryEvent
from schemas.links import (
    INVOICE_XERO,
    PAYMENT_ACCOUNT,
    PAYMENT_CONTACT,
    PAYMENT_INVOICE,
    AccountFed,
    ContactAccount,
    InvoiceFed,
    InvoiceRecord,
)
from schemas.payments import (
    FEEDBACK_TASK,
    MAX_INVOICES_PER_JOB,
    PaymentFeedbackJob,
    account_fields,
    changed_fields,
    invoice_fields,
)
from schemas.xero import XeroBalances, XeroCreditNote, XeroInvoice, XeroPrepaid
from workers import keys
from workers.app import app
from workers.context import StageContext, build_context
from workers.history import record_key
from workers.logs import log
from workers.policies import HOUSEKEEPING
from workers.policies.retry import retry_countdown
from workers.policies.time_limit import POLL_SOFT_SECONDS
from workers.polling import PollSchedule
from workers.redis import get_redis
from workers.settings import get_settings
from workers.stage import StageTask

RECONCILE_TASK = "zxsync.payment_reconcile"
CONTACTS_PER_CREDIT_QUERY = 20  # credit notes named by one webhook, per `where`
PREPAID: tuple[tuple[Literal["Overpayments", "Prepayments"], str], ...] = (
    ("Overpayments", "OVERPAYMENT"),
    ("Prepayments", "PREPAYMENT"),
)
T = TypeVar("T")


class Fed(NamedTuple):
    """One feedback pass: Zoho records written, invoices not linked yet, invoices that failed."""

    written: int
    waiting: list[str]
    failed: list[str]


@app.task(name=FEEDBACK_TASK, base=StageTask, bind=True)
def payment_feedback(task: StageTask, payload: Any) -> int:
    """Feed back the job's invoices and credit notes; returns the Zoho records written."""
    try:
        job = PaymentFeedbackJob.model_validate(payload)
    except ValidationError as exc:
        raise InvalidJob(f"payment feedback job rejected: {exc}", field="invoice_ids") from None
    ctx = task.context_for(job.connection)
    written, waiting, _ = feed_back_job(ctx, job)
    if not waiting:
        return written
    unlinked = NotLinkedYet(f"Xero invoices {', '.join(waiting)} are not linked to Zoho yet")
    if task.request.retries >= task.max_retries:
        log.info("payment_feedback.unlinked", connection=job.connection, invoices=waiting)
        return written
    backoff_max = ctx.settings.zxs_retry_backoff_max
    countdown = retry_countdown(unlinked, task.request.retries, backoff_max)
    narrowed = job.model_copy(update={"invoice_ids": waiting, "credit_note_ids": []}).model_dump()
    raise task.retry(args=[narrowed], exc=unlinked, countdown=countdown)


def feed_back_job(ctx: StageContext, job: PaymentFeedbackJob) -> Fed:
    """The invoices a webhook named, plus those its credit notes are allocated to."""
    invoice_ids = list(job.invoice_ids)
    contacts: list[str] = []
    for note in _credit_notes_by_id(ctx, job.credit_note_ids):
        invoice_ids += [a.Invoice.InvoiceID for a in note.Allocations if a.Invoice]
        if note.Contact is not None:
            contacts.append(note.Contact.ContactID)
    invoices, failed = read_invoices(ctx, list(dict.fromkeys(invoice_ids)))
    fed = feed_back(ctx, invoices, contacts)
    return fed._replace(failed=failed + fed.failed)


def read_invoices(ctx: StageContext, invoice_ids: list[str]) -> tuple[list[XeroInvoice], list[str]]:
    """The invoices in one read; if the answer holds one our model refuses, each alone, so only
    that one fails (logged, with the reason). Invoices Xero no longer has are skipped."""
    if not invoice_ids:
        return [], []
    try:
        return ctx.xero.invoices({"IDs": ",".join(invoice_ids)}), []
    except ValidationError:
        pass
    invoices: list[XeroInvoice] = []
    failed: list[str] = []
    for invoice_id in invoice_ids:
        try:
            invoices.append(ctx.xero.get_invoice(invoice_id))
        except ValidationError as exc:
            failed.append(invoice_id)
            log.error(
                "payment_feedback.unreadable_invoice",
                connection=ctx.connection.name,
                invoice=invoice_id,
                reason=_first_error(exc),
            )
        except ApiError as exc:
            if exc.retryable or isinstance(exc, AuthRevoked | MissingScope):
                raise
            failed.append(invoice_id)
            log.error(
                "payment_feedback.invoice_refused",
                connection=ctx.connection.name,
                invoice=invoice_id,
                error=exc.message,
            )
    return invoices, failed


@app.task(name=RECONCILE_TASK, soft_time_limit=POLL_SOFT_SECONDS, **HOUSEKEEPING)
def payment_reconcile(connection: str | None = None) -> int:
    """Beat entry: without a connection, start a reconciliation for each connection whose
    safety-net poll is due (workers/polling.py); with one, reconcile it now."""
    if connection is None:
        names = list(get_settings().connections())
        for name in reconcile_schedule(get_redis()).claim_due(names, time.time()):
            app.send_task(RECONCILE_TASK, args=[name])
        return 0
    return reconcile_and_schedule(build_context(connection), time.time())


def reconcile_schedule(redis_client: redis.Redis) -> PollSchedule:
    s = get_settings()
    return PollSchedule(
        redis_client,
        "payments",
        s.zxs_payment_reconcile_seconds,
        s.zxs_payment_reconcile_max_seconds,
    )


def credit_schedule(redis_client: redis.Redis, interval: float) -> PollSchedule:
    """The credit safety net's own, slower schedule: 3 calls a run on the idle budget."""
    return PollSchedule(redis_client, "credits", interval, interval)


def reconcile_and_schedule(ctx: StageContext, now: float) -> int:
    """One reconciliation; the next comes sooner when it caught something webhooks missed."""
    written = reconcile(ctx)
    reconcile_schedule(ctx.redis).finished(ctx.connection.name, now, found=written > 0)
    return written


def reconcile(ctx: StageContext) -> int:
    """Feed back every ACCREC invoice Xero changed since the mark; the Zoho records written."""
    conn = ctx.connection.name
    mark_key = keys.RECONCILE(conn)
    mark = ctx.redis.get(mark_key)
    since = datetime.fromisoformat(str(mark)) if mark else None
    invoices = ctx.xero.invoices({"where": 'Type=="ACCREC"'}, since)
    # the mark's second comes back every time: invoices already fed back at this very
    # UpdatedDateUTC cost no balance and credit lookups
    states = ctx.idempotency.links(PAYMENT_INVOICE, conn, [i.InvoiceID for i in invoices])
    changed = [
        i
        for i in invoices
        if not (
            i.UpdatedDateUTC
            and i.InvoiceID in states
            and states[i.InvoiceID].mark == i.UpdatedDateUTC.isoformat()
        )
    ]
    written = 0
    for start in range(0, len(changed), MAX_INVOICES_PER_JOB):
        written += feed_back(ctx, changed[start : start + MAX_INVOICES_PER_JOB]).written
    stamps = [i.UpdatedDateUTC for i in invoices if i.UpdatedDateUTC]
    if stamps:
        ctx.redis.set(mark_key, max(stamps).isoformat())
    credits = credit_schedule(ctx.redis, ctx.settings.zxs_credit_reconcile_seconds)
    if credits.claim_due([conn], time.time()):
        written += _reconcile_credits(ctx, f"{mark_key}:credits")
        credits.finished(conn, time.time(), found=False)
    log.info("payment_reconcile", connection=conn, seen=len(invoices), written=written)
    return written


def _reconcile_credits(ctx: StageContext, mark_key: str) -> int:
    """Credit that moved without an invoice changing (an unallocated credit note, an
    overpayment or prepayment, a refund on one): its contacts' credit balances are fed back.
    Overpayments and prepayments have no webhook, so this poll is their only way in."""
    mark = ctx.redis.get(mark_key)
    since = datetime.fromisoformat(str(mark)) if mark else None
    notes, prepaid = ctx.xero.credits_since(since)
    docs: list[XeroCreditNote | XeroPrepaid] = [*notes, *prepaid]
    stamps = [d.UpdatedDateUTC for d in docs if d.UpdatedDateUTC]
    if since is not None:  # the mark's second comes back every time: not new
        docs = [d for d in docs if d.UpdatedDateUTC is None or d.UpdatedDateUTC > since]
    contacts = list(dict.fromkeys(d.Contact.ContactID for d in docs if d.Contact))
    written = 0
    for start in range(0, len(contacts), MAX_INVOICES_PER_JOB):
        written += feed_back(ctx, [], contacts[start : start + MAX_INVOICES_PER_JOB]).written
    if stamps:
        ctx.redis.set(mark_key, max(stamps).isoformat())
    return written


def feed_back(
    ctx: StageContext, invoices: list[XeroInvoice], contacts: list[str] | None = None
) -> Fed:
    """Write what changed to Zoho for these invoices and for the accounts of their contacts
    (and of `contacts`, from credit notes); each record succeeds or fails alone."""
    conn = ctx.connection.name
    invoices = [i for i in invoices if i.Type in (None, "ACCREC")]
    links = ctx.idempotency.links(INVOICE_XERO, conn, [i.InvoiceID for i in invoices])
    waiting = [i.InvoiceID for i in invoices if i.InvoiceID not in links]
    linked = [i for i in invoices if i.InvoiceID in links]
    accounts = {i.Contact.ContactID: links[i.InvoiceID].account_id for i in linked if i.Contact}
    ctx.idempotency.set_links(
        PAYMENT_CONTACT, conn, {c: ContactAccount(account_id=a) for c, a in accounts.items()}
    )
    extra = [c for c in dict.fromkeys(contacts or []) if c not in accounts]
    known = ctx.idempotency.links(PAYMENT_CONTACT, conn, extra)
    accounts.update({c: v.account_id for c, v in known.items()})
    if unknown := [c for c in extra if c not in known]:
        log.info("payment_feedback.contact_not_linked", connection=conn, contacts=unknown)
    if not linked and not accounts:
        return Fed(0, waiting, [])
    deferred: list[SyncError] = []
    read_at = time.time()  # before the read: a later read cannot see an older state
    contact_list = list(accounts)
    found = _optional(ctx, "balances", deferred, lambda: ctx.xero.contacts(contact_list))
    balances = {c.ContactID: c.Balances for c in found} if found is not None else {}
    credit = _optional(ctx, "credit notes", deferred, lambda: _credit(ctx, contact_list))
    updates: dict[str, list[dict[str, Any]]] = defaultdict(list)
    failed: list[str] = []
    with ctx.idempotency.lock(f"payments:{conn}"):
        invoice_states = _fresh_invoices(ctx, linked, links, updates)
        account_states = _fresh_accounts(ctx, accounts, balances, credit, read_at, updates)
        refused = _write(ctx, updates)
        by_record = {links[i].record_id: i for i in invoice_states}
        failed = [by_record[r] for r in refused if r in by_record]
        ctx.idempotency.set_links(
            PAYMENT_INVOICE, conn, {i: s for i, s in invoice_states.items() if i not in failed}
        )
        ctx.idempotency.set_links(
            PAYMENT_ACCOUNT, conn, {a: s for a, s in account_states.items() if a not in refused}
        )
    written = 0
    for module, records in updates.items():
        for record in records:
            if str(record["id"]) in refused:
                continue
            written += 1
            key = record_key(conn, module, str(record["id"]))
            fields = {k: str(v) for k, v in record.items() if k != "id"}
            ctx.history.log(key, FEEDBACK_TASK, HistoryEvent.PAYMENT_FEEDBACK, **fields)
    if deferred:
        raise deferred[0]  # the rest is written; the job is retried for what is missing
    return Fed(written, waiting, failed)


def _write(ctx: StageContext, updates: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    """Up to 100 records per Zoho call, a result per record; the refused ones and why."""
    refused: dict[str, list[str]] = {}
    for module, records in updates.items():
        for start in range(0, len(records), MAX_RECORDS_PER_CALL):
            chunk = records[start : start + MAX_RECORDS_PER_CALL]
            for record, errors in zip(chunk, ctx.zoho.update_each(module, chunk), strict=True):
                if errors:
                    refused[str(record["id"])] = errors
                    log.error(
                        "payment_feedback.zoho_refused",
                        connection=ctx.connection.name,
                        module=module,
                        record=record["id"],
                        errors=errors,
                    )
    return refused


def _optional(
    ctx: StageContext, what: str, deferred: list[SyncError], read: Callable[[], T]
) -> T | None:
    """An optional lookup: None when it answered 404 or something our models refuse (logged),
    or failed for now (kept in `deferred`, raised once the rest is written)."""
    try:
        return read()
    except ValidationError as exc:
        reason = _first_error(exc)
    except ApiError as exc:
        if isinstance(exc, AuthRevoked | MissingScope):
            raise
        if exc.retryable:
            deferred.append(exc)
        reason = exc.message
    log.warning(
        "payment_feedback.lookup_failed", connection=ctx.connection.name, lookup=what, reason=reason
    )
    return None


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"


def _fresh_invoices(
    ctx: StageContext,
    invoices: list[XeroInvoice],
    links: dict[str, InvoiceRecord],
    updates: dict[str, list[dict[str, Any]]],
) -> dict[str, InvoiceFed]:
    """Queue the changed fields of invoices read no earlier than the last write; new states."""
    conn = ctx.connection.name
    states = ctx.idempotency.links(PAYMENT_INVOICE, conn, [i.InvoiceID for i in invoices])
    fresh: dict[str, InvoiceFed] = {}
    for invoice in invoices:
        state = states.get(invoice.InvoiceID)
        stamp = invoice.UpdatedDateUTC or datetime.now(UTC)  # Xero always sends it
        if state and datetime.fromisoformat(state.mark) > stamp:
            log.info("payment_feedback.stale", connection=conn, invoice=invoice.InvoiceID)
            continue
        fields = invoice_fields(invoice)
        diff = changed_fields(fields, state.fields if state else None)
        link = links[invoice.InvoiceID]
        if diff:
            updates[link.module].append({"id": link.record_id, **diff})
        fresh[invoice.InvoiceID] = InvoiceFed(mark=stamp.isoformat(), fields=fields)
    return fresh


def _fresh_accounts(
    ctx: StageContext,
    accounts: dict[str, str],
    balances: dict[str, XeroBalances | None],
    credit: dict[str, Decimal] | None,
    read_at: float,
    updates: dict[str, list[dict[str, Any]]],
) -> dict[str, AccountFed]:
    """Queue the changed balance fields of accounts not written from a later read."""
    conn = ctx.connection.name
    states = ctx.idempotency.links(PAYMENT_ACCOUNT, conn, list(set(accounts.values())))
    fresh: dict[str, AccountFed] = {}
    for contact_id, account_id in accounts.items():
        state = states.get(account_id)
        if contact_id not in balances or (state and state.mark > read_at):
            continue
        fields = account_fields(
            balances[contact_id] or XeroBalances(),
            credit.get(contact_id, Decimal(0)) if credit is not None else None,
            ctx.connection.credit_hold_overdue,
        )
        if state and "Xero_Credit_Balance" not in fields:  # unknown now: keep the last one
            last = state.fields.get("Xero_Credit_Balance")
            fields = {**fields, **({"Xero_Credit_Balance": last} if last is not None else {})}
        diff = changed_fields(fields, state.fields if state else None)
        if diff:
            updates["Accounts"].append({"id": account_id, **diff})
        fresh[account_id] = AccountFed(mark=read_at, fields=fields)
    return fresh


def _credit(ctx: StageContext, contact_ids: list[str]) -> dict[str, Decimal]:
    """Unallocated credit per contact: the RemainingCredit of its AUTHORISED ACCREC credit notes,
    overpayments and prepayments (a refund, a payment on one of them, lowers it in Xero)."""
    credit: dict[str, Decimal] = defaultdict(Decimal)
    clauses = [f'Contact.ContactID==guid("{c}")' for c in contact_ids]
    if not clauses:
        return credit
    scope = 'Type=="ACCRECCREDIT" AND Status=="AUTHORISED"'
    # the client splits the contacts into calls whose URLs fit Xero's limit
    docs: list[XeroCreditNote | XeroPrepaid] = list(ctx.xero.credit_notes_any(clauses, scope))
    for collection, kind in PREPAID:
        scope = f'Type=="RECEIVE-{kind}" AND Status=="AUTHORISED"'
        docs += ctx.xero.prepaid_any(collection, clauses, scope)
    for doc in docs:
        if doc.Contact is not None:
            credit[doc.Contact.ContactID] += doc.RemainingCredit
    return credit


def _credit_notes_by_id(ctx: StageContext, note_ids: list[str]) -> list[XeroCreditNote]:
    """The credit notes a CREDITNOTE webhook named (GET /CreditNotes has no IDs filter)."""
    notes: list[XeroCreditNote] = []
    deferred: list[SyncError] = []
    for start in range(0, len(note_ids), CONTACTS_PER_CREDIT_QUERY):
        chunk = note_ids[start : start + CONTACTS_PER_CREDIT_QUERY]
        where = " OR ".join(f'CreditNoteID==guid("{n}")' for n in chunk)
        found = _optional(ctx, "credit notes", deferred, partial(ctx.xero.credit_notes, where))
        if deferred:  # what the webhook named could not be read for now: retry the job
            raise deferred[0]
        notes += [n for n in found or [] if n.Type in (None, "ACCRECCREDIT")]
    return notes
