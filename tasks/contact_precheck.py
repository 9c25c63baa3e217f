"""Stage 2: make sure the Zoho account exists as a Xero contact, and remember the link.

Match order (users' top complaint is duplicate contacts): stored link, then ContactNumber (the
Zoho account id, set by us at creation), then exact Name; only then create. Vendors of purchase
orders go the same way (tasks/vendor_precheck.py), through `linked_contact` and `find_contact`.
"""

from __future__ import annotations

from collections.abc import Callable

from clients.xero import quote
from schemas.errors import InvalidRecord
from schemas.jobs import StageMessage
from schemas.mapping import contact_from_account
from schemas.xero import XeroContact
from schemas.zoho import ZohoAccount, ZohoContact, parse_record
from workers.context import StageContext
from workers.idempotency import idempotency_key
from workers.stage import stage


@stage("zxsync.contact_precheck")
def contact_precheck(msg: StageMessage, ctx: StageContext) -> StageMessage:
    """Find or create the Xero contact of the document's account."""
    if msg.intent == "cancel":
        return msg  # a cancellation needs only the link
    assert msg.document is not None, "fetch_record runs first"
    account_id = msg.document.account.id
    contact_id = linked_contact(
        ctx, "contact", account_id, lambda: _find_or_create(msg, ctx, account_id)
    )
    return msg.model_copy(update={"xero_contact_id": contact_id})


def linked_contact(
    ctx: StageContext, kind: str, zoho_id: str, find_or_create: Callable[[], XeroContact]
) -> str:
    """The Xero ContactID linked to a Zoho record; found or created once, under a lock."""
    conn = ctx.connection.name
    link = ctx.idempotency.link(kind, conn, zoho_id)
    if link is None:
        with ctx.idempotency.lock(f"{kind}:{conn}:{zoho_id}"):
            link = ctx.idempotency.link(kind, conn, zoho_id)
            if link is None:
                contact = find_or_create()
                link = {"ContactID": contact.ContactID, "Name": contact.Name}
                ctx.idempotency.set_links(kind, conn, {zoho_id: link})
    return str(link["ContactID"])


def find_contact(
    ctx: StageContext, number: str, name: str, record: str, field: str
) -> XeroContact | None:
    """The active Xero contact with this ContactNumber, else this Name; archived is an error."""
    for where in (f"ContactNumber=={quote(number)}", f"Name=={quote(name)}"):
        matches = ctx.xero.find_contacts(where)
        active = [c for c in matches if c.ContactStatus in (None, "ACTIVE")]
        if active:
            return active[0]
        if matches:
            raise InvalidRecord(
                record,
                field,
                f"the matching Xero contact {matches[0].ContactID} is archived",
                hint="Un-archive the contact in Xero, then replay.",
            )
    return None


def _find_or_create(msg: StageMessage, ctx: StageContext, account_id: str) -> XeroContact:
    account = parse_record(ZohoAccount, "Accounts", ctx.zoho.get_record("Accounts", account_id))
    record = f"Accounts {account.id} ({account.name})"
    found = find_contact(ctx, account.id, account.name, record, "Account_Name")
    if found is not None:
        return found
    person = None
    if msg.document and msg.document.contact:
        raw = ctx.zoho.get_record("Contacts", msg.document.contact.id)
        person = parse_record(ZohoContact, "Contacts", raw)
    body = contact_from_account(account, person)
    key = idempotency_key("contact", ctx.connection.name, account.id)
    return ctx.xero.create_contact(body, key)
