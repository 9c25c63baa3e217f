"""Contact sync, Xero -> Zoho (issue 18.3): a Xero CONTACT event updates the linked account.

The relay turns CONTACT CREATE/UPDATE events of a connection with `contact_sync: "both"` into a
`zxsync.contact_sync` job (queue zxs.payments, beside payment feedback). The job reads the
contacts from Xero (one call per URL-sized chunk of IDs) and their Zoho accounts (one call), and
writes what changed (one Zoho call for up to 100 accounts, `"trigger": []`). The decisions
(`schemas/contact_sync.py`): only accounts linked to the contact (`payment_contact`, learnt at
write-back and by payment feedback) are touched, never one created; latest change wins; an echo
of our own write writes nothing.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import ValidationError

from schemas.contact_sync import CONTACT_TASK, ContactSyncJob, xero_update, zoho_update
from schemas.errors import InvalidJob
from schemas.history import HistoryEvent
from schemas.links import CONTACT, PAYMENT_CONTACT
from schemas.wire import dumps
from workers.app import app
from workers.context import StageContext
from workers.history import record_key
from workers.idempotency import idempotency_key
from workers.logs import log
from workers.stage import StageTask


@app.task(name=CONTACT_TASK, base=StageTask, bind=True)
def contact_sync(task: StageTask, payload: Any) -> int:
    """Update the Zoho accounts of the job's Xero contacts; returns the accounts written."""
    try:
        job = ContactSyncJob.model_validate(payload)
    except ValidationError as exc:
        raise InvalidJob(f"contact sync job rejected: {exc}", field="contact_ids") from None
    ctx = task.context_for(job.connection)
    return sync_contacts(ctx, job.contact_ids) + push_accounts(ctx, job.account_ids)


def sync_contacts(ctx: StageContext, contact_ids: list[str]) -> int:
    """Xero -> Zoho: the accounts linked to these contacts; the accounts written."""
    conn = ctx.connection
    if conn.contact_sync != "both" or not contact_ids:
        return 0
    links = ctx.idempotency.links(PAYMENT_CONTACT, conn.name, contact_ids)
    if unknown := [c for c in contact_ids if c not in links]:
        # never a new account from a contact event: a contact no Zoho account is linked to
        log.info("contact_sync.not_linked", connection=conn.name, contacts=unknown)
    if not links:
        return 0
    contacts = ctx.xero.contacts(list(links))
    account_ids = list(dict.fromkeys(links[c.ContactID].account_id for c in contacts))
    fields = ["id", "Modified_Time", *dict.fromkeys(conn.contact_fields.values())]
    accounts = {str(a["id"]): a for a in ctx.zoho.get_records("Accounts", account_ids, fields)}
    updates: list[dict[str, Any]] = []
    for contact in contacts:
        account = accounts.get(links[contact.ContactID].account_id)
        if account is None:
            log.info("contact_sync.account_gone", connection=conn.name, contact=contact.ContactID)
            continue
        update, why = zoho_update(contact, account, conn.contact_fields)
        ctx.history.log(
            record_key(conn.name, "Accounts", str(account["id"])),
            CONTACT_TASK,
            HistoryEvent.CONTACT_SYNC,
            detail=f"Xero contact {contact.ContactID}: {why}",
        )
        if update is not None:
            updates.append(update)
    written = 0
    for start in range(0, len(updates), 100):
        chunk = updates[start : start + 100]
        for record, errors in zip(chunk, ctx.zoho.update_each("Accounts", chunk), strict=True):
            if errors:
                log.error(
                    "contact_sync.zoho_refused",
                    connection=conn.name,
                    account=record["id"],
                    errors=errors,
                )
            else:
                written += 1
    return written


def push_accounts(ctx: StageContext, account_ids: list[str]) -> int:
    """Zoho -> Xero: the contacts linked to these accounts (by contact_precheck); each update is
    one POST with an Idempotency-Key of its content; the contacts written."""
    conn = ctx.connection
    if conn.contact_sync != "both" or not account_ids:
        return 0
    links = ctx.idempotency.links(CONTACT, conn.name, account_ids)
    if unknown := [a for a in account_ids if a not in links]:
        # never a new contact from an account event: the invoice pipeline creates contacts
        log.info("contact_sync.account_not_linked", connection=conn.name, accounts=unknown)
    if not links:
        return 0
    fields = ["id", "Modified_Time", *dict.fromkeys(conn.contact_fields.values())]
    accounts = ctx.zoho.get_records("Accounts", list(links), fields)
    contacts = {
        c.ContactID: c
        for c in ctx.xero.contacts(list(dict.fromkeys(v.ContactID for v in links.values())))
    }
    written = 0
    for account in accounts:
        contact = contacts.get(links[str(account["id"])].ContactID)
        if contact is None:
            log.info("contact_sync.contact_gone", connection=conn.name, account=account["id"])
            continue
        body, why = xero_update(contact, account, conn.contact_fields)
        ctx.history.log(
            record_key(conn.name, "Accounts", str(account["id"])),
            CONTACT_TASK,
            HistoryEvent.CONTACT_PUSH,
            detail=f"Xero contact {contact.ContactID}: {why}",
        )
        if body is not None:
            digest = hashlib.sha256(dumps(body).encode()).hexdigest()[:16]
            key = idempotency_key("contact-push", conn.name, str(account["id"]), digest)
            ctx.xero.update_contact(contact.ContactID, body, key)
            written += 1
    return written
