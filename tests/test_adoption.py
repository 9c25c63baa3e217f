"""Backfill adoption decisions (issue 17.2): adopt on number + contact + total, list anything
ambiguous, never guess; contacts by link then ContactNumber; items by Code."""

from __future__ import annotations

from decimal import Decimal

from schemas.adoption import (
    HistoryDoc,
    XeroDoc,
    contact_matches,
    decide_adoption,
    index_by_number,
    item_matches,
)


def doc(
    rid: str, number: str | None, account: str = "A1", total: str = "110.00", linked: bool = False
) -> HistoryDoc:
    return HistoryDoc("Invoices", rid, number, account, Decimal(total), linked)


def xero(
    xid: str,
    number: str | None = None,
    reference: str | None = None,
    contact: str = "C1",
    total: str = "110.00",
    status: str = "AUTHORISED",
) -> XeroDoc:
    return XeroDoc(xid, number, reference, contact, Decimal(total), status)


def test_contacts_match_by_link_then_a_single_contact_number() -> None:
    found = contact_matches(
        ["A1", "A2", "A3", "A4"],
        links={"A1": "C-linked"},
        by_number={"A1": ["C-other"], "A2": ["C2"], "A3": ["C3a", "C3b"]},
    )
    assert found == {"A1": "C-linked", "A2": "C2"}  # A3: two contacts, A4: none


def test_items_match_by_code() -> None:
    assert item_matches({"P1": "W-1", "P2": "W-2"}, {"W-1": "I1"}) == {"P1": "I1"}


def verdicts(docs: list[HistoryDoc], xeros: list[XeroDoc], **kw: object) -> list[tuple[str, str]]:
    result = decide_adoption(docs, index_by_number(xeros), {"A1": "C1"}, **kw)  # type: ignore[arg-type]
    return [(v.action, v.reason) for v in result]


def test_an_invoice_with_number_contact_and_total_agreeing_is_adopted() -> None:
    [(action, _)] = verdicts([doc("1", "INV-1")], [xero("X1", reference="INV-1")])
    assert action == "adopt"
    [(action, _)] = verdicts([doc("1", "INV-1")], [xero("X1", number="INV-1")])
    assert action == "adopt"


def test_no_number_in_xero_means_create() -> None:
    assert verdicts([doc("1", "INV-1")], [xero("X1", reference="INV-2")])[0][0] == "create"


def test_a_number_with_another_contact_or_total_is_ambiguous_not_created() -> None:
    [(action, reason)] = verdicts([doc("1", "INV-1")], [xero("X1", "INV-1", total="99.00")])
    assert action == "ambiguous" and "total (Xero 99.00, Zoho 110.00)" in reason
    [(action, reason)] = verdicts([doc("1", "INV-1")], [xero("X1", "INV-1", contact="C9")])
    assert action == "ambiguous" and "contact" in reason
    [(action, reason)] = verdicts([doc("1", "INV-1", account="A7")], [xero("X1", "INV-1")])
    assert action == "ambiguous" and "matches no Xero contact" in reason


def test_two_matches_or_two_claimants_are_ambiguous() -> None:
    [(action, _)] = verdicts([doc("1", "INV-1")], [xero("X1", "INV-1"), xero("X2", None, "INV-1")])
    assert action == "ambiguous"
    both = verdicts([doc("1", "INV-1"), doc("2", "INV-1")], [xero("X1", "INV-1")])
    assert [a for a, _ in both] == ["ambiguous", "ambiguous"]
    [(action, _)] = verdicts([doc("1", "INV-1")], [xero("X1", "INV-1")], taken=frozenset({"X1"}))
    assert action == "ambiguous"


def test_linked_and_untriggered_documents_are_skipped_with_their_reason() -> None:
    untriggered = HistoryDoc("Quotes", "3", "Q-1", "A1", Decimal(1), False, "status 'Draft'")
    result = verdicts([doc("1", "INV-1", linked=True), untriggered], [xero("X1", "INV-1")])
    assert result == [("skip", "already linked to Xero"), ("skip", "status 'Draft'")]


def test_a_deleted_xero_invoice_is_not_a_candidate() -> None:
    assert verdicts([doc("1", "INV-1")], [xero("X1", "INV-1", status="DELETED")])[0][0] == "create"
