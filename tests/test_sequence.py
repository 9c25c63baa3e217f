"""Where Xero takes over in Quote -> Sales Order -> Invoice: the pure decisions."""

from __future__ import annotations

import pytest

from schemas.connection import Connection
from schemas.sequence import decide

BASE = Connection(name="c", xero_tenant_id="t", zoho_org_id="o")


def conn(**options: object) -> Connection:
    return BASE.model_copy(update=options)


def test_default_syncs_invoices_at_any_status_and_nothing_else() -> None:
    assert decide("Invoices", "insert", "Created", None, False, BASE).action == "sync"
    quote = decide("Quotes", "update", "Confirmed", None, False, BASE)
    assert quote.action == "skip" and "triggers: Invoices" in quote.reason


def test_quote_waits_for_its_trigger_stage() -> None:
    c = conn(triggers={"Quotes": ["Closed Won", "Accepted"]})
    waiting = decide("Quotes", "update", "Negotiation", None, False, c)
    assert waiting.action == "skip" and "waiting for Closed Won or Accepted" in waiting.reason
    assert decide("Quotes", "update", "Accepted", None, False, c).action == "sync"


def test_linked_documents_are_kept_in_step_whatever_their_status() -> None:
    c = conn(triggers={"Quotes": ["Accepted"]})
    assert decide("Quotes", "update", "Closed Won", None, True, c).action == "sync"
    assert decide("Invoices", "insert", "Created", None, True, c).action == "sync", (
        "an invoice converted from a synced quote is kept in step, not skipped"
    )


@pytest.mark.parametrize(("event", "status"), [("delete", None), ("update", "Cancelled")])
def test_cancel_only_what_is_in_xero(event: str, status: str | None) -> None:
    assert decide("Invoices", event, status, None, True, BASE).action == "cancel"
    skipped = decide("Invoices", event, status, None, False, BASE)
    assert skipped.action == "skip" and "nothing" in skipped.reason


def test_approval_gate_holds_until_approved() -> None:
    c = conn(approval_field="Status", approval_value="Approved")
    held = decide("Invoices", "insert", "Created", "Created", False, c)
    assert held.action == "await_approval" and "needs 'Approved'" in held.reason
    assert decide("Invoices", "update", "Approved", "Approved", False, c).action == "sync"
