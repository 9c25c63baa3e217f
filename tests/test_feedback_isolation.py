"""Payment feedback that one odd answer cannot stop, and CREDITNOTE events (issue 21).

Fakes stand in for Xero and Zoho (their shapes are the real clients'); the state store is the
session's real Redis, as the locks run Lua scripts.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from schemas.connection import Connection
from schemas.errors import NotFound, ServerError
from schemas.links import INVOICE_XERO, InvoiceRecord
from schemas.payments import PaymentFeedbackJob
from schemas.xero import XeroContact, XeroCreditNote, XeroInvoice, XeroPayment
from workers.settings import Settings

TENANT = "9f1c3a52-8a0e-4c1b-9d55-2f0a7e1b9c11"


def raw_invoice(invoice_id: str, contact: str = "c-1", **fields: Any) -> dict[str, Any]:
    return {
        "InvoiceID": invoice_id,
        "Type": "ACCREC",
        "Status": "AUTHORISED",
        "Total": Decimal("100"),
        "AmountDue": Decimal("100"),
        "Contact": {"ContactID": contact, "Name": contact},
        "UpdatedDateUTC": "/Date(1764115200000+0000)/",
        **fields,
    }


class FakeXero:
    """Parses like clients.xero: a list answer is validated whole, one invoice alone."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.notes: list[dict[str, Any]] = []
        self.credit_error: Exception | None = None
        self.contacts_error: Exception | None = None
        self.credit: dict[str, Decimal] = {}

    def invoices(self, params: dict[str, str], since: Any = None) -> list[XeroInvoice]:
        ids = params["IDs"].split(",")
        return [XeroInvoice.model_validate(self.rows[i]) for i in ids if i in self.rows]

    def get_invoice(self, invoice_id: str) -> XeroInvoice:
        if invoice_id not in self.rows:
            raise NotFound("Xero", "The resource you're looking for cannot be found")
        return XeroInvoice.model_validate(self.rows[invoice_id])

    def contacts(self, ids: list[str]) -> list[XeroContact]:
        if self.contacts_error:
            raise self.contacts_error
        balances = {"AccountsReceivable": {"Outstanding": 7, "Overdue": 0}}
        return [XeroContact.model_validate({"ContactID": c, "Balances": balances}) for c in ids]

    def credit_notes_any(self, clauses: list[str], scope: str) -> list[XeroCreditNote]:
        return self.credit_notes(f"{scope} AND ({' OR '.join(clauses)})")

    def credit_notes(self, where: str) -> list[XeroCreditNote]:
        if self.credit_error:
            raise self.credit_error
        if "CreditNoteID" in where:
            wanted = [n for n in self.notes if n["CreditNoteID"] in where]
            return [XeroCreditNote.model_validate(n) for n in wanted]
        return [
            XeroCreditNote.model_validate(
                {
                    "CreditNoteID": f"n-{c}",
                    "Type": "ACCRECCREDIT",
                    "Status": "AUTHORISED",
                    "RemainingCredit": amount,
                    "Contact": {"ContactID": c},
                }
            )
            for c, amount in self.credit.items()
            if c in where
        ]

    def prepaid_any(self, collection: str, clauses: list[str], scope: str) -> list[Any]:
        return []  # no overpayments or prepayments here (tests/test_credit_balance.py has them)


class FakeZoho:
    def __init__(self) -> None:
        self.written: list[tuple[str, dict[str, Any]]] = []
        self.refuse: set[str] = set()

    def update_each(self, module: str, records: list[dict[str, Any]]) -> list[list[str]]:
        answers = []
        for record in records:
            if record["id"] in self.refuse:
                answers.append([f"{module} {record['id']}: INVALID_DATA"])
            else:
                self.written.append((module, record))
                answers.append([])
        return answers


@pytest.fixture
def ctx(redis_url: str) -> Iterator[Any]:
    import redis

    from workers.context import StageContext

    name = f"fbi-{uuid.uuid4().hex[:8]}"
    context = StageContext(
        Connection(name=name, xero_tenant_id=TENANT, zoho_org_id="org"),
        Settings(),
        redis.Redis.from_url(redis_url, decode_responses=True),
    )
    context.__dict__.update(xero=FakeXero(), zoho=FakeZoho())
    links = {
        f"i-{n}": InvoiceRecord(module="Invoices", record_id=f"50{n}", account_id=f"90{n}")
        for n in range(1, 4)
    }
    context.idempotency.set_links(INVOICE_XERO, name, links)
    yield context


def job(
    ctx: Any, invoices: tuple[str, ...] | list[str] = (), notes: tuple[str, ...] | list[str] = ()
) -> PaymentFeedbackJob:
    return PaymentFeedbackJob(
        connection=ctx.connection.name,
        invoice_ids=list(invoices),
        credit_note_ids=list(notes),
        event_id=uuid.uuid4().hex,
    )


def written(ctx: Any, module: str) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for m, r in ctx.zoho.written if m == module}


def test_one_odd_invoice_does_not_stop_the_others(ctx: Any) -> None:
    """Before: one invoice the model refused made the whole pass raise."""
    from tasks.payment_feedback import feed_back_job

    xero = ctx.xero
    xero.rows = {
        "i-1": raw_invoice("i-1", AmountDue=Decimal("0"), Status="PAID"),
        "i-2": raw_invoice("i-2", "c-2", Status="SOMETHING_NEW"),
        "i-3": raw_invoice("i-3", "c-3"),
    }
    done = feed_back_job(ctx, job(ctx, ["i-1", "i-2", "i-3"]))
    assert done.waiting == [] and done.failed == ["i-2"]
    invoices = written(ctx, "Invoices")
    assert invoices["501"]["Xero_Payment_Status"] == "Paid"
    assert invoices["503"]["Xero_Payment_Status"] == "Unpaid"
    assert "502" not in invoices


def test_a_404_on_the_optional_credit_lookup_keeps_the_rest_of_the_feedback(ctx: Any) -> None:
    from tasks.payment_feedback import feed_back_job

    ctx.xero.rows = {"i-1": raw_invoice("i-1")}
    ctx.xero.credit_error = NotFound("Xero", "The resource you're looking for cannot be found")
    done = feed_back_job(ctx, job(ctx, ["i-1"]))
    assert done.failed == []
    assert written(ctx, "Invoices")["501"]["Xero_Amount_Due"] == Decimal("100")
    account = written(ctx, "Accounts")["901"]
    assert account["Xero_Outstanding_Balance"] == 7
    assert "Xero_Credit_Balance" not in account, "unknown credit is not written as 0"


def test_balances_that_cannot_be_read_leave_the_invoice_fields_written(ctx: Any) -> None:
    from tasks.payment_feedback import feed_back_job

    ctx.xero.rows = {"i-1": raw_invoice("i-1")}
    ctx.xero.contacts_error = ServerError("Xero", "HTTP 500: oops", status=500)
    with pytest.raises(ServerError):  # after the invoice was written: the job is retried
        feed_back_job(ctx, job(ctx, ["i-1"]))
    assert "501" in written(ctx, "Invoices") and written(ctx, "Accounts") == {}
    ctx.xero.contacts_error = None
    ctx.zoho.written.clear()
    feed_back_job(ctx, job(ctx, ["i-1"]))  # the retry writes only what was missing
    assert set(written(ctx, "Accounts")) == {"901"} and written(ctx, "Invoices") == {}


def test_a_record_zoho_refuses_fails_alone_and_is_tried_again(ctx: Any) -> None:
    from tasks.payment_feedback import feed_back_job

    ctx.xero.rows = {"i-1": raw_invoice("i-1"), "i-2": raw_invoice("i-2", "c-2")}
    ctx.zoho.refuse = {"502"}
    done = feed_back_job(ctx, job(ctx, ["i-1", "i-2"]))
    assert done.failed == ["i-2"]
    assert "501" in written(ctx, "Invoices")
    ctx.zoho.refuse = set()
    ctx.zoho.written.clear()
    feed_back_job(ctx, job(ctx, ["i-1", "i-2"]))
    assert set(written(ctx, "Invoices")) == {"502"}, "only the refused one is written again"


def test_creditnote_events_update_amounts_due_and_the_credit_balance(ctx: Any) -> None:
    """A CREDITNOTE webhook: the invoices it is allocated to, and its contact's credit."""
    from tasks.payment_feedback import feed_back_job

    xero = ctx.xero
    xero.rows = {"i-1": raw_invoice("i-1"), "i-2": raw_invoice("i-2", "c-2")}
    feed_back_job(ctx, job(ctx, ["i-1", "i-2"]))  # both contacts are known now
    ctx.zoho.written.clear()

    xero.rows["i-1"] = raw_invoice("i-1", AmountDue=Decimal("40"), AmountCredited=Decimal("60"))
    xero.credit = {"c-1": Decimal("90"), "c-2": Decimal("25")}
    xero.notes = [
        {
            "CreditNoteID": "cn-1",
            "Type": "ACCRECCREDIT",
            "Status": "AUTHORISED",
            "RemainingCredit": Decimal("90"),
            "Contact": {"ContactID": "c-1"},
            "Allocations": [{"Amount": Decimal("60"), "Invoice": {"InvoiceID": "i-1"}}],
        },
        {"CreditNoteID": "cn-2", "Contact": {"ContactID": "c-2"}},  # unallocated, sparse
        {"CreditNoteID": "cn-3", "Contact": {"ContactID": "c-never-seen"}},
    ]
    done = feed_back_job(ctx, job(ctx, notes=["cn-1", "cn-2", "cn-3"]))
    assert done.failed == []
    assert written(ctx, "Invoices")["501"]["Xero_Amount_Due"] == Decimal("40")
    accounts = written(ctx, "Accounts")
    assert accounts["901"]["Xero_Credit_Balance"] == Decimal("90")
    assert accounts["902"]["Xero_Credit_Balance"] == Decimal("25")


def test_models_accept_what_the_spec_marks_optional() -> None:
    assert XeroPayment.model_validate({"PaymentID": "p"}).Date is None
    assert XeroCreditNote.model_validate({"CreditNoteID": "n"}).Allocations == []
    assert XeroContact.model_validate({"ContactID": "c"}).Name == ""
    allocation = XeroCreditNote.model_validate(
        {"CreditNoteID": "n", "Allocations": [{"Invoice": {"InvoiceID": "i"}}]}
    ).Allocations[0]
    assert allocation.Invoice is not None and allocation.Invoice.InvoiceID == "i"
    paid = XeroInvoice.model_validate(
        {**raw_invoice("i"), "Payments": [{"Amount": Decimal("5")}, {"PaymentID": "x"}]}
    )
    from schemas.payments import invoice_fields

    fields = invoice_fields(paid)  # undated payments are no "last payment"
    assert fields["Xero_Last_Payment_Date"] is None and fields["Xero_Last_Payment_Amount"] is None


def test_an_odd_credit_note_answer_leaves_the_credit_balance_unwritten(ctx: Any) -> None:
    """An answer our model refuses (RemainingCredit not a number) is an odd answer too."""
    from pydantic import ValidationError

    from tasks.payment_feedback import feed_back_job

    def odd(where: str) -> list[XeroCreditNote]:
        return [XeroCreditNote.model_validate({"CreditNoteID": "n", "RemainingCredit": "abc"})]

    ctx.xero.rows = {"i-1": raw_invoice("i-1")}
    ctx.xero.credit_notes = odd
    with pytest.raises(ValidationError):
        odd("")
    feed_back_job(ctx, job(ctx, ["i-1"]))
    assert "501" in written(ctx, "Invoices")
    assert "Xero_Credit_Balance" not in written(ctx, "Accounts")["901"]
