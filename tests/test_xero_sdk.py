"""Every Xero endpoint the product calls, driven through the official `xero-python` SDK against
the sandbox: a real client, not ours, must send what the sandbox takes and deserialize every
answer (issue 21). The product's calls are listed in clients/xero.py and zxsync/connect.py."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from sandbox.config import SandboxConfig
from sandbox.server import ThreadedServer
from sandbox.xero_app import XeroSandbox, create_xero_app

pytestmark = pytest.mark.integration  # the sandbox served over HTTP, a server per test

xero_python = pytest.importorskip("xero_python")

TENANT = str(uuid.uuid4())


@pytest.fixture(scope="module")
def sdk() -> Iterator[tuple[Any, Any, XeroSandbox]]:
    from xero_python.accounting import AccountingApi
    from xero_python.api_client import ApiClient
    from xero_python.api_client.configuration import Configuration
    from xero_python.api_client.oauth2 import OAuth2Token
    from xero_python.identity import IdentityApi

    xs = XeroSandbox(SandboxConfig())
    xs.add_tenant(TENANT, "SDK Pty", "AU", "AUD")
    xs.add_client("sdk-app", "sdk-secret", "sdk-refresh", [TENANT])
    server = ThreadedServer(create_xero_app(xs)).start()
    answer = httpx.post(
        f"{server.url}/connect/token",
        auth=("sdk-app", "sdk-secret"),
        data={"grant_type": "refresh_token", "refresh_token": "sdk-refresh"},
    )
    token = {**answer.json(), "expires_at": time.time() + 1800}
    token["scope"] = token["scope"].split()
    client = ApiClient(
        Configuration(oauth2_token=OAuth2Token(client_id="sdk-app", client_secret="sdk-secret")),
        pool_threads=1,
        oauth2_token_getter=lambda: token,
        oauth2_token_saver=token.update,
    )
    yield (
        AccountingApi(client, base_url=f"{server.url}/api.xro/2.0"),
        IdentityApi(client, base_url=server.url),
        xs,
    )
    server.stop()


def test_connections_and_settings(sdk: tuple[Any, Any, XeroSandbox]) -> None:
    accounting, identity, _ = sdk
    [connection] = identity.get_connections()
    assert str(connection.tenant_id) == TENANT and connection.created_date_utc is not None
    rates = accounting.get_tax_rates(TENANT).tax_rates
    assert {r.tax_type for r in rates} >= {"OUTPUT", "INPUT"}
    assert any(a.code == "200" for a in accounting.get_accounts(TENANT).accounts)
    [region] = accounting.get_tracking_categories(TENANT).tracking_categories
    assert region.name == "Region" and region.options


def test_contacts_items_invoices_credit_notes_and_purchase_orders(
    sdk: tuple[Any, Any, XeroSandbox],
) -> None:
    from xero_python.accounting import (
        Contact,
        Contacts,
        Invoice,
        Invoices,
        Item,
        Items,
        LineItem,
        Purchase,
        PurchaseOrder,
        PurchaseOrders,
    )

    accounting, _, xs = sdk
    key = uuid.uuid4().hex
    # contacts: create (batch, summarizeErrors=false), find by where and by IDs with paging
    made = accounting.create_contacts(
        TENANT,
        Contacts(contacts=[Contact(name="SDK Buyer", contact_number="Z-1")]),
        summarize_errors=False,
        idempotency_key=key,
    ).contacts[0]
    assert made.contact_id is not None, made
    contact_id = str(made.contact_id)
    found = accounting.get_contacts(TENANT, where='ContactNumber=="Z-1"').contacts
    assert [str(c.contact_id) for c in found] == [contact_id]
    by_id = accounting.get_contacts(TENANT, i_ds=[contact_id], page=1, page_size=100).contacts
    assert by_id[0].balances is not None

    # items: create, then find by code
    item = Item(code="SDK-1", name="SDK widget", sales_details=Purchase(unit_price=10.5))
    accounting.create_items(
        TENANT,
        Items(items=[item]),
        summarize_errors=False,
        unitdp=4,
        idempotency_key=uuid.uuid4().hex,
    )
    assert accounting.get_items(TENANT, where='Code=="SDK-1"').items[0].code == "SDK-1"

    # invoices: create, read (one, many by IDs, modified since, by where), update, email,
    # online link, PDF
    line = LineItem(
        description="Widget", quantity=1, unit_amount=100, account_code="200", tax_type="OUTPUT"
    )
    invoice = Invoice(
        type="ACCREC",
        contact=Contact(contact_id=contact_id),
        line_items=[line],
        date=date(2026, 12, 1),
        due_date=date(2026, 12, 31),
        status="AUTHORISED",
        reference="Z-INV-1",
    )
    created = accounting.create_invoices(
        TENANT,
        Invoices(invoices=[invoice]),
        summarize_errors=False,
        unitdp=4,
        idempotency_key=uuid.uuid4().hex,
    ).invoices[0]
    invoice_id = str(created.invoice_id)
    assert created.total == Decimal("110.00") or float(created.total) == 110.0
    one = accounting.get_invoice(TENANT, invoice_id).invoices[0]
    assert one.updated_date_utc is not None and one.contact.contact_id is not None
    since = datetime.now(UTC) - timedelta(minutes=5)
    changed = accounting.get_invoices(
        TENANT, if_modified_since=since, where='Type=="ACCREC"', page=1, page_size=100
    ).invoices
    assert invoice_id in {str(i.invoice_id) for i in changed}
    many = accounting.get_invoices(TENANT, i_ds=[invoice_id], page=1, page_size=100).invoices
    assert many[0].amount_due is not None
    found_inv = accounting.get_invoices(TENANT, where='Reference=="Z-INV-1"').invoices
    assert [str(i.invoice_id) for i in found_inv] == [invoice_id]
    edited = accounting.update_invoice(
        TENANT,
        invoice_id,
        Invoices(invoices=[Invoice(reference="Z-INV-1b")]),
        unitdp=4,
        idempotency_key=uuid.uuid4().hex,
    ).invoices[0]
    assert edited.reference == "Z-INV-1b"
    accounting.email_invoice(TENANT, invoice_id, {}, idempotency_key=uuid.uuid4().hex)
    online = accounting.get_online_invoice(TENANT, invoice_id).online_invoices[0]
    assert online.online_invoice_url.startswith("https://")
    pdf = accounting.get_invoice_as_pdf(TENANT, invoice_id)
    assert pdf is not None

    # credit notes: the where payment feedback sends
    xs.apply_credit_note(TENANT, invoice_id, Decimal("10"), Decimal("25"))  # 15 left
    where = (
        f'Type=="ACCRECCREDIT" AND Status=="AUTHORISED" AND '
        f'(Contact.ContactID==guid("{contact_id}"))'
    )
    notes = accounting.get_credit_notes(TENANT, where=where, page=1, page_size=100).credit_notes
    assert notes and notes[0].remaining_credit is not None

    # purchase orders: create, read modified since (paged), update
    order = PurchaseOrder(
        contact=Contact(contact_id=contact_id),
        line_items=[
            LineItem(
                description="Part", quantity=2, unit_amount=5, account_code="300", tax_type="INPUT"
            )
        ],
        date=date(2026, 12, 1),
        status="AUTHORISED",
    )
    po = accounting.create_purchase_orders(
        TENANT,
        PurchaseOrders(purchase_orders=[order]),
        summarize_errors=False,
        idempotency_key=uuid.uuid4().hex,
    ).purchase_orders[0]
    po_id = str(po.purchase_order_id)
    listed = accounting.get_purchase_orders(
        TENANT, if_modified_since=since, page=1, page_size=100
    ).purchase_orders
    assert po_id in {str(p.purchase_order_id) for p in listed}
    updated = accounting.update_purchase_order(
        TENANT,
        po_id,
        PurchaseOrders(purchase_orders=[PurchaseOrder(reference="PO-R")]),
        idempotency_key=uuid.uuid4().hex,
    ).purchase_orders[0]
    assert updated.reference == "PO-R"


def test_payments(sdk: tuple[Any, Any, XeroSandbox]) -> None:
    """GET/PUT /Payments (the sandbox has them now)."""
    from xero_python.accounting import (
        Account,
        Contact,
        Invoice,
        Invoices,
        LineItem,
        Payment,
        Payments,
    )

    accounting, _, _ = sdk
    invoice = Invoice(
        type="ACCREC",
        contact=Contact(name="Payer"),
        status="AUTHORISED",
        date=date(2026, 12, 1),
        due_date=date(2026, 12, 31),
        line_items=[
            LineItem(
                description="x", quantity=1, unit_amount=50, account_code="200", tax_type="OUTPUT"
            )
        ],
    )
    made = accounting.create_invoices(TENANT, Invoices(invoices=[invoice])).invoices[0]
    paid = accounting.create_payments(
        TENANT,
        Payments(
            payments=[
                Payment(
                    invoice=Invoice(invoice_id=made.invoice_id),
                    account=Account(code="090"),
                    amount=20,
                    date=date(2026, 12, 2),
                )
            ]
        ),
    )
    payment = paid.payments[0]
    assert payment.payment_id is not None and float(payment.amount) == 20.0
    listed = accounting.get_payments(TENANT, where='PaymentType=="ACCRECPAYMENT"').payments
    assert str(payment.payment_id) in {str(p.payment_id) for p in listed}
