"""Batch elements are typed (issue #15.5): one pydantic model per kind, built by the stage that
waits and read by the handler that writes, on the wire shape the buffer always held."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from tasks.batch_handlers.elements import (
    ContactElement,
    CreditNoteElement,
    InvoiceElement,
    ItemElement,
    WriteBackElement,
)

# what each kind's stage put in the buffer before the models (an upgrade finds these waiting)
BUFFERED: list[tuple[type[BaseModel], dict[str, Any]]] = [
    (
        InvoiceElement,
        {
            "record": "Invoices 1",
            "body": {"Type": "ACCREC", "LineItems": []},
            "version": "v1",
            "lookup": None,
            "suspect": False,
            "account_id": "a1",
            "products": {"p1": "CODE-1"},
        },
    ),
    (
        CreditNoteElement,
        {
            "record": "Invoices 1",
            "body": {"Type": "ACCRECCREDIT"},
            "reference": "ZINV-1 credit",
            "contact_id": "c1",
            "suspect": True,
        },
    ),
    (ContactElement, {"record": "Accounts a1 (Acme)", "body": {"Name": "Acme"}}),
    (ContactElement, {}),  # the account already waited: its payload is not read again
    (ItemElement, {"record": "Products p1 (Widget)", "body": {"Code": "CODE-1"}}),
    (WriteBackElement, {"module": "Invoices", "record": {"id": "1", "Xero_Sync_Status": "Synced"}}),
]


@pytest.mark.parametrize(("model", "wire"), BUFFERED)
def test_an_element_buffered_before_reads_and_writes_back_the_same(
    model: type[BaseModel], wire: dict[str, Any]
) -> None:
    element = model.model_validate(wire)
    assert element.wire() == wire  # type: ignore[attr-defined]


def test_a_write_backs_zoho_fields_are_its_update_not_a_record() -> None:
    element = WriteBackElement.model_validate(BUFFERED[-1][1])
    assert element.update == {"id": "1", "Xero_Sync_Status": "Synced"}


def test_an_element_missing_what_its_handler_needs_fails_at_the_stage() -> None:
    """Built by the stage, so a missing field fails the stage that has the record at hand, not
    the flusher that writes fifty others."""
    with pytest.raises(ValidationError, match="reference"):
        CreditNoteElement(record="r", body={}, contact_id="c", suspect=False)  # type: ignore[call-arg]
