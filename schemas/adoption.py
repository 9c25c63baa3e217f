"""Backfill adoption: what Xero already has is linked, not created again (pure decisions).

A Zoho document of the history is adopted when exactly one Xero document carries its number
(as InvoiceNumber or Reference), belongs to the contact its account matches and has its total.
Contacts match as the live pipeline matches them (README "Exactly once", no merging): the
stored link, then ContactNumber (the Zoho account id); a Xero contact with the account's Name
and no ContactNumber is left to the pipeline (it adopts and claims it when it first needs it).
Items match by Code. Anything that could be two things is listed as ambiguous, never guessed,
and neither adopted nor created: creating it could duplicate what Xero has.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

Action = Literal["create", "adopt", "skip", "ambiguous"]


@dataclass(frozen=True)
class HistoryDoc:
    """A Zoho document of the history, as the backfill reads it (one paged list row)."""

    module: str
    record_id: str
    number: str | None
    account_id: str
    total: Decimal
    linked: bool  # already has a Xero document (our link)
    skip_reason: str | None = None  # the trigger rules would not send it (schemas.sequence)


@dataclass(frozen=True)
class XeroDoc:
    """A Xero invoice or purchase order, as the backfill reads it (paged list)."""

    doc_id: str
    number: str | None
    reference: str | None
    contact_id: str | None
    total: Decimal
    status: str


@dataclass(frozen=True)
class Verdict:
    """What the backfill does with one Zoho document, and why (a line of the dry-run CSV)."""

    doc: HistoryDoc
    action: Action
    reason: str
    xero: XeroDoc | None = None


def contact_matches(
    account_ids: list[str],
    links: dict[str, str],
    by_number: dict[str, list[str]],
) -> dict[str, str]:
    """Zoho account id -> Xero ContactID: the stored link, else the one contact whose
    ContactNumber is the account id (two such contacts: no match, the account is ambiguous)."""
    found: dict[str, str] = {}
    for account in account_ids:
        if account in links:
            found[account] = links[account]
        elif len(by_number.get(account, [])) == 1:
            found[account] = by_number[account][0]
    return found


def item_matches(codes: dict[str, str], xero_codes: dict[str, str]) -> dict[str, str]:
    """Zoho product id -> Xero ItemID for products whose code Xero has (Codes are unique)."""
    return {pid: xero_codes[code] for pid, code in codes.items() if code in xero_codes}


def index_by_number(xero_docs: list[XeroDoc]) -> dict[str, list[XeroDoc]]:
    """Xero documents by each of their InvoiceNumber and Reference (case kept, trimmed)."""
    index: dict[str, list[XeroDoc]] = defaultdict(list)
    for doc in xero_docs:
        for key in {(doc.number or "").strip(), (doc.reference or "").strip()} - {""}:
            index[key].append(doc)
    return index


def decide_adoption(
    docs: list[HistoryDoc],
    index: dict[str, list[XeroDoc]],
    contacts: dict[str, str],
    taken: frozenset[str] = frozenset(),
) -> list[Verdict]:
    """A verdict per document. `contacts`: account id -> matched Xero ContactID; `taken`: Xero
    documents already linked to some Zoho record (adopting one again would merge two)."""
    verdicts: list[Verdict] = []
    claims: dict[str, list[int]] = defaultdict(list)
    for doc in docs:
        if doc.linked:
            verdicts.append(Verdict(doc, "skip", "already linked to Xero"))
            continue
        if doc.skip_reason:
            verdicts.append(Verdict(doc, "skip", doc.skip_reason))
            continue
        candidates = [x for x in index.get((doc.number or "").strip(), []) if x.status != "DELETED"]
        if not doc.number or not candidates:
            verdicts.append(Verdict(doc, "create", "no Xero document has its number"))
            continue
        contact = contacts.get(doc.account_id)
        agree = [x for x in candidates if x.contact_id == contact and x.total == doc.total]
        if len(agree) == 1 and agree[0].doc_id not in taken:
            claims[agree[0].doc_id].append(len(verdicts))
            verdicts.append(
                Verdict(
                    doc,
                    "adopt",
                    f"Xero {agree[0].number or agree[0].doc_id} has its number, contact and total",
                    agree[0],
                )
            )
        elif len(agree) == 1:
            verdicts.append(
                Verdict(
                    doc,
                    "ambiguous",
                    f"Xero {agree[0].doc_id} matches but is linked to another Zoho record",
                    agree[0],
                )
            )
        elif len(agree) > 1:
            ids = ", ".join(x.doc_id for x in agree)
            verdicts.append(Verdict(doc, "ambiguous", f"{len(agree)} Xero documents match: {ids}"))
        else:
            verdicts.append(Verdict(doc, "ambiguous", _disagreement(doc, candidates, contact)))
    for positions in claims.values():
        if len(positions) > 1:  # two Zoho records would adopt one Xero document
            for i in positions:
                v = verdicts[i]
                verdicts[i] = Verdict(
                    v.doc,
                    "ambiguous",
                    f"{len(positions)} Zoho records match Xero {v.xero.doc_id if v.xero else ''}",
                    v.xero,
                )
    return verdicts


def _disagreement(doc: HistoryDoc, candidates: list[XeroDoc], contact: str | None) -> str:
    x = candidates[0]
    what = []
    if x.contact_id != contact:
        what.append("contact" if contact else "contact (the account matches no Xero contact)")
    if x.total != doc.total:
        what.append(f"total (Xero {x.total}, Zoho {doc.total})")
    return f"Xero {x.number or x.doc_id} has its number but another {' and '.join(what)}"
