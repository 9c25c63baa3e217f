"""Stage 2: make sure the Zoho account exists as a Xero contact, and remember the link.

Match order (users' top complaint is duplicate contacts): stored link, then ContactNumber (the
Zoho account id, set by us at creation), then exact Name; only then create.
"""

from __future__ import annotations

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
    assert msg.document is not None, "fetch_record runs first"
    conn = ctx.connection.name
    account_id = msg.document.account.id
    link = ctx.idempotency.link("contact", conn, account_id)
    if link is None:
        with ctx.idempotency.lock(f"contact:{conn}:{account_id}"):
            link = ctx.idempotency.link("contact", conn, account_id)
            if link is None:
                contact = _find_or_create(msg, ctx, account_id)
                link = {"ContactID": contact.ContactID, "Name": contact.Name}
                ctx.idempotency.set_links("contact", conn, {account_id: link})
    return msg.model_copy(update={"xero_contact_id": link["ContactID"]})


def _find_or_create(msg: StageMessage, ctx: StageContext, account_id: str) -> XeroContact:
    account = parse_record(ZohoAccount, "Accounts", ctx.zoho.get_record("Accounts", account_id))
    for where in (f"ContactNumber=={quote(account.id)}", f"Name=={quote(account.name)}"):
        matches = ctx.xero.find_contacts(where)
        active = [c for c in matches if c.ContactStatus in (None, "ACTIVE")]
        if active:
            return active[0]
        if matches:
            raise InvalidRecord(
                f"Accounts {account.id} ({account.name})",
                "Account_Name",
                f"the matching Xero contact {matches[0].ContactID} is archived",
                hint="Un-archive the contact in Xero, then replay.",
            )
    person = None
    if msg.document and msg.document.contact:
        raw = ctx.zoho.get_record("Contacts", msg.document.contact.id)
        person = parse_record(ZohoContact, "Contacts", raw)
    body = contact_from_account(account, person)
    key = idempotency_key("contact", ctx.connection.name, account.id)
    return ctx.xero.create_contact(body, key)
