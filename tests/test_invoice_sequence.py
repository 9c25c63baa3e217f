"""The invoice creation sequence, one scenario per setting combination that matters, on real
parts (worker processes, Redis, sandboxes over HTTP), asserting the sandboxes' state."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from sandbox.seed import build_dataset, load_dataset
from workers import keys

pytestmark = pytest.mark.integration


class Scenario:
    """A started stack with one seeded account and product, and helpers to drive events."""

    def __init__(self, make_stack: Callable[..., Any], **options: Any) -> None:
        self.stack = make_stack(options=options)
        self.conn = self.stack.connections[0]
        self.org, self.tenant = self.conn.zoho_org_id, self.conn.xero_tenant_id
        data = load_dataset(self.stack.zoho, self.org, build_dataset(invoices=1, seed=17))
        self.account = data.accounts[0]
        self.product = data.products[0]
        self.stack.start_worker(concurrency=2)

    def lines(self, quantity: str = "2") -> list[dict[str, Any]]:
        return [
            {
                "Product_Name": {"id": self.product["id"], "name": self.product["Product_Name"]},
                "Quantity": Decimal(quantity),
                "List_Price": Decimal("49.95"),
                "Line_Tax": [{"name": "GST", "percentage": Decimal("10")}],
            }
        ]

    def insert(self, module: str, **fields: Any) -> str:
        items = {
            "Quotes": "Quoted_Items",
            "Sales_Orders": "Ordered_Items",
            "Invoices": "Invoiced_Items",
        }[module]
        record = {
            "Subject": f"{module} for {self.account['Account_Name']}",
            "Account_Name": {"id": self.account["id"], "name": self.account["Account_Name"]},
            "Currency": "AUD",
            items: self.lines(),
            **fields,
        }
        return str(self.stack.zoho.insert(self.org, module, record)["id"])

    def event(self, module: str, record_id: str, event: str = "update") -> tuple[str, str]:
        """Send one event and wait for its outcome (a fresh one, not the previous event's)."""
        from workers.app import app
        from workers.history import RecordHistory
        from workers.redis import get_redis

        key = f"{self.conn.name}:{module}:{record_id}"
        get_redis().hdel(keys.OUTCOMES(self.conn.name), key)
        app.send_task(
            "zxsync.ingest",
            args=[
                {
                    "connection": self.conn.name,
                    "module": module,
                    "record_id": record_id,
                    "event": event,
                    "event_id": uuid.uuid4().hex,
                }
            ],
        )
        history = RecordHistory(get_redis())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            outcome = history.outcomes(self.conn.name).get(key)
            if outcome:
                return outcome
            time.sleep(0.1)
        raise AssertionError(f"no outcome for {key}: {history.entries(key)}")

    def invoices(self) -> list[dict[str, Any]]:
        return self.stack.xero.invoices(self.tenant)

    def zoho(self, module: str, record_id: str) -> dict[str, Any]:
        return self.stack.zoho.get(self.org, module, record_id)


def test_quote_accepted_becomes_one_authorised_invoice_sent_by_xero_through_conversion(
    make_stack: Callable[..., Any],
) -> None:
    s = Scenario(make_stack, triggers={"Quotes": ["Accepted"]}, sender="xero")
    quote = s.insert("Quotes", Quote_Stage="Negotiation")
    outcome, reason = s.event("Quotes", quote, "insert")
    assert outcome == "skipped" and "waiting for Accepted" in reason
    s.stack.zoho.update(s.org, "Quotes", quote, {"Quote_Stage": "Accepted"})
    assert s.event("Quotes", quote)[0] == "created"
    [invoice] = s.invoices()
    assert invoice["Status"] == "AUTHORISED" and invoice["SentToContact"] is True
    assert Decimal(str(invoice["Total"])) == Decimal(str(s.zoho("Quotes", quote)["Grand_Total"]))
    # converted along the chain: still one Xero invoice, and only one e-mail
    order = s.insert("Sales_Orders", SO_Number="SO-1", Quote_Name={"id": quote}, Status="Created")
    assert s.event("Sales_Orders", order, "insert")[0] in {"updated", "skipped"}
    final = s.insert(
        "Invoices",
        Invoice_Number="ZINV-9",
        Sales_Order={"id": order},
        Invoice_Date="2026-11-25",
        Due_Date="2026-12-25",
        Status="Created",
    )
    assert s.event("Invoices", final, "insert")[0] in {"updated", "skipped"}
    assert len(s.invoices()) == 1
    assert s.zoho("Invoices", final)["Xero_Invoice_ID"] == invoice["InvoiceID"]
    emails = s.stack.xero.stats()["by_route"].get("POST /Invoices/{InvoiceID}/Email", 0)
    assert emails == 1


def test_sales_order_confirmed_becomes_a_draft(make_stack: Callable[..., Any]) -> None:
    s = Scenario(make_stack, triggers={"Sales_Orders": ["Confirmed"]}, invoice_status="DRAFT")
    order = s.insert("Sales_Orders", SO_Number="SO-7", Status="Created")
    assert s.event("Sales_Orders", order, "insert")[0] == "skipped"
    s.stack.zoho.update(s.org, "Sales_Orders", order, {"Status": "Confirmed"})
    assert s.event("Sales_Orders", order)[0] == "created"
    [invoice] = s.invoices()
    assert invoice["Status"] == "DRAFT" and invoice["Reference"] == "SO-7"
    assert s.zoho("Sales_Orders", order)["Xero_Invoice_Status"] == "DRAFT"


def test_zoho_approval_gate_holds_the_invoice_until_approved(
    make_stack: Callable[..., Any],
) -> None:
    s = Scenario(make_stack, approval_field="Status", approval_value="Approved")
    record = s.insert(
        "Invoices",
        Invoice_Number="ZINV-A1",
        Status="Created",
        Invoice_Date="2026-11-25",
        Due_Date="2026-12-25",
    )
    outcome, reason = s.event("Invoices", record, "insert")
    assert outcome == "skipped" and "awaiting approval" in reason and s.invoices() == []
    s.stack.zoho.update(s.org, "Invoices", record, {"Status": "Approved"})
    assert s.event("Invoices", record, "approve")[0] == "created"
    assert len(s.invoices()) == 1


def test_zoho_sends_with_online_link_and_pdf_and_keeps_zoho_numbers(
    make_stack: Callable[..., Any],
) -> None:
    s = Scenario(make_stack, sender="zoho", numbering="zoho")
    record = s.insert(
        "Invoices",
        Invoice_Number="ZINV-Z7",
        Status="Created",
        Invoice_Date="2026-11-25",
        Due_Date="2026-12-25",
    )
    assert s.event("Invoices", record, "insert")[0] == "created"
    [invoice] = s.invoices()
    assert invoice["InvoiceNumber"] == "ZINV-Z7" and invoice.get("SentToContact") is not True
    zoho = s.zoho("Invoices", record)
    assert zoho["Xero_Online_Invoice_URL"].startswith("https://in.xero.com/")
    [attachment] = s.stack.zoho.attachments(s.org, "Invoices", record)
    assert attachment["File_Name"].endswith(".pdf")


def test_edit_updates_xero_cancel_voids_and_a_forbidden_edit_is_reported(
    make_stack: Callable[..., Any],
) -> None:
    from workers.deadletter import DeadLetterStore
    from workers.redis import get_redis

    s = Scenario(make_stack)
    record = s.insert(
        "Invoices",
        Invoice_Number="ZINV-E1",
        Status="Created",
        Invoice_Date="2026-11-25",
        Due_Date="2026-12-25",
    )
    other = s.insert(
        "Invoices",
        Invoice_Number="ZINV-E2",
        Status="Created",
        Invoice_Date="2026-11-25",
        Due_Date="2026-12-25",
    )
    assert s.event("Invoices", record, "insert")[0] == "created"
    assert s.event("Invoices", other, "insert")[0] == "created"
    # edit: three instead of two
    s.stack.zoho.update(s.org, "Invoices", record, {"Invoiced_Items": s.lines("3")})
    assert s.event("Invoices", record)[0] == "updated"
    by_number = {i["Reference"]: i for i in s.invoices()}
    assert len(by_number) == 2
    assert (
        Decimal(str(by_number["ZINV-E1"]["Total"]))
        == Decimal(str(s.zoho("Invoices", record)["Grand_Total"]))
        == Decimal("164.84")
    )
    # cancel in Zoho: the Xero invoice is voided
    s.stack.zoho.update(s.org, "Invoices", record, {"Status": "Cancelled"})
    assert s.event("Invoices", record)[0] == "voided"
    assert {i["Reference"]: i for i in s.invoices()}["ZINV-E1"]["Status"] == "VOIDED"
    # paid in Xero, then edited in Zoho: Xero refuses, and that is an exception report
    paid = {i["Reference"]: i for i in s.invoices()}["ZINV-E2"]
    s.stack.xero.add_payment(s.tenant, paid["InvoiceID"], Decimal(str(paid["Total"])))
    s.stack.zoho.update(s.org, "Invoices", other, {"Invoiced_Items": s.lines("5")})
    assert s.event("Invoices", other)[0] == "failed"
    letters = [d for d in DeadLetterStore(get_redis()).list(10_000) if d.connection == s.conn.name]
    assert len(letters) == 1 and "cannot be edited" in letters[0].error
