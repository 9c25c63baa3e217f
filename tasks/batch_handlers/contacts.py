"""The batch handler of new Xero contacts (kind `contacts`), and the contact matching rules.

Stage 2 (tasks/contact_precheck.py) raises `AwaitingBatch(CONTACTS, ...)`; a flush runs
`write_contacts`: the accounts of up to 50 documents are created in one call, and only those
Xero says are taken are looked up (one filtered call) and matched: the ContactNumber (our Zoho
id), then a Name with no ContactNumber (adopted and claimed); a Name held by another account's
contact is a `Clash`, created under a distinct name or dead-lettered as the connection says.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.errors import InvalidRecord, SyncError, ValidationFailed
from schemas.links import CONTACT, ContactLink, ContactOutcome
from schemas.wire import dumps
from schemas.xero import XeroContact, XeroContactIn
from tasks.batch_handlers.elements import ContactElement
from workers.batching import Element, Results, batch_handler, flush_key
from workers.context import StageContext
from workers.idempotency import idempotency_key

CONTACTS = "contacts"
LINK = CONTACT


@batch_handler(CONTACTS)
def write_contacts(ctx: StageContext, elements: list[Element]) -> Results:
    """Create the batch's contacts in one call, then match the ones Xero says exist.

    Creating first costs one call for a batch of new customers (a burst's usual case); Xero
    refuses a contact whose ContactNumber (our Zoho id, unique across all contacts) or active
    Name is taken, and only those are looked up (one call) and matched: ContactNumber, then
    Name, an archived match being an error. The naive path looks every contact up first.
    """
    conn = ctx.connection.name
    batching = ctx.settings.zxs_batching
    known = ctx.idempotency.links(LINK, conn, [e.id for e in elements]) if batching else {}
    results: Results = {e.id: _outcome(known[e.id]) for e in elements if e.id in known}
    # an element added bare (its account already waited) but finished meanwhile: look again
    results.update(
        {e.id: ContactOutcome() for e in elements if e.id not in known and _payload(e).body is None}
    )
    todo = [e for e in elements if e.id not in known and _payload(e).body is not None]
    bodies = {e.id: XeroContactIn.model_validate(_payload(e).body) for e in todo}
    found: dict[str, XeroContact] = {}
    refused: dict[str, list[str]] = {}
    if batching:
        found, refused = _create(ctx, todo, bodies)
        lookup = [e for e in todo if e.id in refused and _taken(refused[e.id])]
    else:
        lookup = todo
    matched = _lookup(ctx, lookup, bodies)
    notes: dict[str, str] = {}
    clashes: list[Element] = []
    for element_id, match in matched.items():
        if isinstance(match, Clash):
            clashes.append(next(e for e in lookup if e.id == element_id))
            refused.pop(element_id, None)
        elif isinstance(match, SyncError):
            results[element_id] = match
        elif match is not None:
            if not match.ContactNumber:  # made in Xero by hand: adopt it, and claim it
                match = _claim(ctx, match, bodies[element_id])
                notes[element_id] = f"adopted the Xero contact {match.ContactID} by its name "
                notes[element_id] += "(it had no ContactNumber) and set its ContactNumber"
            found[element_id] = match
            refused.pop(element_id, None)
    if not batching:
        missing = [e for e in todo if matched.get(e.id) is None]
        created, refused = _create(ctx, missing, bodies)
        found.update(created)
    renamed, failed = _distinct(ctx, clashes, bodies, matched)
    results.update(failed)
    for element_id, contact in renamed.items():
        found[element_id] = contact
        notes[element_id] = f"the name {bodies[element_id].Name!r} belongs to the Xero contact "
        notes[element_id] += f"of another Zoho account: created as {contact.Name!r}"
    for element in todo:
        if element.id in refused and element.id not in results:
            record = _payload(element).record
            results[element.id] = ValidationFailed(
                "Xero", [f"{record}: {m}" for m in refused[element.id]]
            )
    links = {eid: ContactLink(ContactID=c.ContactID, Name=c.Name) for eid, c in found.items()}
    assert ctx.flush is not None, "a batch handler runs in a flush"
    ctx.flush.store(LINK, links, [])
    # a note is read by the waiting stage into its history
    results.update({eid: _outcome(link, notes.get(eid)) for eid, link in links.items()})
    return results


def _outcome(link: ContactLink, note: str | None = None) -> ContactOutcome:
    return ContactOutcome(ContactID=link.ContactID, Name=link.Name, note=note)


@dataclass(frozen=True)
class Clash:
    """The account's Name is held by the Xero contact of another Zoho account."""

    contact: XeroContact


def _claim(ctx: StageContext, contact: XeroContact, body: XeroContactIn) -> XeroContact:
    conn = ctx.connection.name
    key = idempotency_key("contact-claim", conn, contact.ContactID, body.ContactNumber)
    return ctx.xero.claim_contact(contact.ContactID, body.ContactNumber, key)


def distinct_name(body: XeroContactIn) -> str:
    """The documented rule for a clashing name: "Name (City)", else "Name (Zoho id)"."""
    city = next((a.City for a in body.Addresses or [] if a.City), None)
    suffix = f" ({city or body.ContactNumber})"
    return body.Name[: 255 - len(suffix)] + suffix


def _distinct(
    ctx: StageContext,
    clashes: list[Element],
    bodies: dict[str, XeroContactIn],
    matched: dict[str, XeroContact | SyncError | Clash | None],
) -> tuple[dict[str, XeroContact], dict[str, SyncError]]:
    """Create clashing accounts under a distinct name (or dead-letter them, naming both)."""
    if not clashes:
        return {}, {}
    failed: dict[str, SyncError] = {}
    if ctx.connection.contact_name_clash == "dead_letter":
        for element in clashes:
            other = matched[element.id]
            assert isinstance(other, Clash)
            failed[element.id] = InvalidRecord(
                _payload(element).record,
                "Account_Name",
                f"the Xero contact {other.contact.ContactID} with this name belongs to Zoho "
                f"account {other.contact.ContactNumber}: two accounts share the name",
                hint="Rename one account in Zoho (Xero requires unique contact names), or set "
                "contact_name_clash = suffix, then replay.",
            )
        return {}, failed
    renamed = {
        e.id: bodies[e.id].model_copy(update={"Name": distinct_name(bodies[e.id])}) for e in clashes
    }
    created, refused = _create(ctx, clashes, renamed)
    for element in clashes:
        if element.id in refused:
            messages = [f"{_payload(element).record}: {m}" for m in refused[element.id]]
            failed[element.id] = ValidationFailed("Xero", messages)
    return created, failed


def _taken(errors: list[str]) -> bool:
    """Xero refused the contact only because its Name or ContactNumber is already in use."""
    return bool(errors) and all("already assigned to another contact" in m for m in errors)


def _create(
    ctx: StageContext, elements: list[Element], bodies: dict[str, XeroContactIn]
) -> tuple[dict[str, XeroContact], dict[str, list[str]]]:
    """One PUT for these contacts: (created by element id, Xero's errors by element id)."""
    if not elements:
        return {}, {}
    sent = [bodies[e.id] for e in elements]
    key = flush_key(CONTACTS, ctx.connection.name, elements, dumps([b.body() for b in sent]))
    assert ctx.flush is not None, "a batch handler runs in a flush"
    ctx.flush.check()  # a flusher whose lease expired creates nothing
    created: dict[str, XeroContact] = {}
    refused: dict[str, list[str]] = {}
    for element, (contact, errors) in zip(
        elements, ctx.xero.create_contacts(sent, key), strict=True
    ):
        if contact is None:
            refused[element.id] = errors
        else:
            created[element.id] = contact
    return created, refused


def _lookup(
    ctx: StageContext, elements: list[Element], bodies: dict[str, XeroContactIn]
) -> dict[str, XeroContact | SyncError | Clash | None]:
    """Each element's existing contact (or why it cannot be used), in one filtered call; an
    unnumbered contact adopted by name goes to one element of the batch only."""
    if not elements:
        return {}
    existing = ctx.xero.find_contacts_matching(
        [bodies[e.id].ContactNumber for e in elements], [bodies[e.id].Name for e in elements]
    )
    matched: dict[str, XeroContact | SyncError | Clash | None] = {}
    adopted: set[str] = set()
    for e in elements:
        body = bodies[e.id]
        match = match_contact(existing, body.ContactNumber, body.Name, _payload(e).record)
        if isinstance(match, XeroContact) and not match.ContactNumber:
            if match.ContactID in adopted:  # another account of this batch adopted it
                match = Clash(match)
            else:
                adopted.add(match.ContactID)
        matched[e.id] = match
    return matched


def match_contact(
    existing: list[XeroContact], number: str, name: str, record: str, field: str = "Account_Name"
) -> XeroContact | InvalidRecord | Clash | None:
    """The active contact with the ContactNumber; else an active one with the Name and no
    ContactNumber (to adopt); a Name held by another account's contact is a Clash; an archived
    match is an error."""
    by_number = [c for c in existing if c.ContactNumber == number]
    by_name = [c for c in existing if (c.Name or "").casefold() == name.casefold()]
    for matches in (by_number, by_name):
        active = [c for c in matches if c.ContactStatus in (None, "ACTIVE")]
        if matches is by_name and active:
            free = [c for c in active if not c.ContactNumber]
            return free[0] if free else Clash(active[0])
        if active:
            return active[0]
        if matches:
            return InvalidRecord(
                record,
                field,
                f"the matching Xero contact {matches[0].ContactID} is archived",
                hint="Un-archive the contact in Xero, then replay.",
            )
    return None


def _payload(element: Element) -> ContactElement:
    return ContactElement.model_validate(element.payload)
