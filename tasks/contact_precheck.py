"""Stage 2: make sure the Zoho account exists as a Xero contact, and remember the link.

Match (users' top complaint is duplicate contacts, the worse one is two customers merged): the
stored link, then ContactNumber (the Zoho account id, set by us at creation). A Xero contact
with the same Name is adopted only when it carries no ContactNumber (made in Xero by hand), and
is then claimed (its ContactNumber set), so no second account can match it. A Name held by the
contact of another account is a clash: Xero requires unique active names, so the account is
created as "Name (City)", else "Name (Zoho id)" (`contact_name_clash = suffix`), or
dead-lettered naming both records (`dead_letter`); either way a history note says so. Documents
of one tenant share the work (tasks/batch_handlers/contacts.py): the accounts of up to 50
documents are created in one call, and only those Xero says are taken are looked up (one
filtered call) and matched. Vendors of purchase orders go one by one (tasks/vendor_precheck.py),
through `linked_contact` and `find_contact`, where a clash is dead-lettered.
"""

from __future__ import annotations

from collections.abc import Callable

from schemas.errors import InvalidRecord
from schemas.history import HistoryEvent
from schemas.jobs import SaleToCancel, SaleToSync, ToContact
from schemas.links import ContactLink, ContactOutcome, LinkKind
from schemas.mapping import contact_from_account
from schemas.xero import XeroContact
from schemas.zoho import ZohoAccount, ZohoContact, parse_record
from tasks.batch_handlers.contacts import CONTACTS, LINK, Clash, match_contact
from tasks.batch_handlers.elements import ContactElement
from workers.batching import AwaitingBatch, buffered
from workers.context import StageContext
from workers.history import record_key
from workers.stage import stage


@stage("zxsync.contact_precheck")
def contact_precheck(msg: ToContact, ctx: StageContext) -> SaleToSync | SaleToCancel:
    """Find or create the Xero contact of the document's account (in a batch)."""
    if isinstance(msg, SaleToCancel):
        return msg  # a cancellation needs only the link
    account_id = msg.document.account.id
    outcome = ctx.batch_outcome(account_id, ContactOutcome)
    # without a ContactID the batch had no details for it: look again (below)
    contact_id = outcome.ContactID if outcome is not None else None
    if outcome is not None and contact_id and outcome.note:  # adopted by name, or renamed
        key = record_key(ctx.connection.name, msg.job.module, msg.job.record_id)
        ctx.history.log(key, "zxsync.contact_precheck", HistoryEvent.CONTACT, detail=outcome.note)
    if contact_id is None and (ctx.settings.zxs_batching or ctx.batch is not None):
        link = ctx.idempotency.link(LINK, ctx.connection.name, account_id)
        contact_id = link.ContactID if link is not None else None
    if contact_id is None:
        waiting = ctx.settings.zxs_batching and ctx.batch is None
        waiting = waiting and buffered(CONTACTS, ctx.connection.name, account_id)
        element = ContactElement() if waiting else _element(msg, ctx, account_id)  # Zoho once
        raise AwaitingBatch(CONTACTS, {account_id: element.wire()})
    return msg.model_copy(update={"xero_contact_id": contact_id})


def _element(msg: SaleToSync, ctx: StageContext, account_id: str) -> ContactElement:
    """What the flush needs to find or create this account's contact."""
    account = parse_record(ZohoAccount, "Accounts", ctx.zoho.get_record("Accounts", account_id))
    person = None
    if msg.document.contact:
        raw = ctx.zoho.get_record("Contacts", msg.document.contact.id)
        person = parse_record(ZohoContact, "Contacts", raw)
    return ContactElement(
        record=f"Accounts {account.id} ({account.name})",
        body=contact_from_account(account, person).body(),
    )


def linked_contact(
    ctx: StageContext,
    kind: LinkKind[ContactLink],
    zoho_id: str,
    find_or_create: Callable[[], XeroContact],
) -> str:
    """The Xero ContactID linked to a Zoho record; found or created once, under a lock."""
    conn = ctx.connection.name
    link = ctx.idempotency.link(kind, conn, zoho_id)
    if link is None:
        with ctx.idempotency.lock(f"{kind.name}:{conn}:{zoho_id}"):
            link = ctx.idempotency.link(kind, conn, zoho_id)
            if link is None:
                contact = find_or_create()
                link = ContactLink(ContactID=contact.ContactID, Name=contact.Name)
                ctx.idempotency.set_links(kind, conn, {zoho_id: link})
    return link.ContactID


def find_contact(
    ctx: StageContext, number: str, name: str, record: str, field: str
) -> XeroContact | None:
    """The active Xero contact with this ContactNumber, else this Name; archived is an error."""
    existing = ctx.xero.find_contacts_matching([number], [name])
    match = match_contact(existing, number, name, record, field)
    if isinstance(match, InvalidRecord):
        raise match
    if isinstance(match, Clash):
        raise InvalidRecord(
            record,
            field,
            f"the Xero contact {match.contact.ContactID} with this name belongs to Zoho record "
            f"{match.contact.ContactNumber}: two records share the name",
            hint="Rename one of them in Zoho (Xero requires unique contact names), then replay.",
        )
    return match
