"""Unit tests of payment feedback: webhook signatures, the relay's answers, the pure decisions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import fakeredis
import pytest
from starlette.testclient import TestClient

from relay.app import create_relay_app
from relay.signatures import token_matches, xero_signature, xero_signers
from sandbox.xero_webhooks import sign as sandbox_sign
from schemas.payments import account_fields, changed_fields, invoice_fields, payment_status
from schemas.xero import XeroBalances, XeroInvoice
from workers.settings import Settings

KEY = "webhook-key-0123456789abcdef"
TENANT = "9f1c3a52-8a0e-4c1b-9d55-2f0a7e1b9c11"


def invoice(**fields: Any) -> XeroInvoice:
    base: dict[str, Any] = {"InvoiceID": "i-1", "Status": "AUTHORISED", "Total": Decimal("110")}
    return XeroInvoice.model_validate({**base, **fields})


# ----------------------------------------------------------------------------- signatures


def test_signature_is_base64_hmac_sha256_of_the_raw_body_and_matches_the_sandbox() -> None:
    body = b'{"events":[],"firstEventSequence":1,"lastEventSequence":1,"entropy":"ABC"}'
    # computed independently: base64(hmac_sha256(key, body))
    assert xero_signature(body, "k") == "EyDNFdeNrA3K+9ccL0OPXfP5zvDFWdqy9kF/DzDnEFs="
    assert xero_signature(body, KEY) == sandbox_sign(body, KEY)


def test_signers_names_only_connections_whose_key_signed_the_body() -> None:
    body = b"{}"
    keys = {"a": KEY, "b": KEY, "c": "another-key-0123456789"}
    assert xero_signers(body, xero_signature(body, KEY), keys) == {"a", "b"}
    assert xero_signers(body + b" ", xero_signature(body, KEY), keys) == set()
    assert xero_signers(body, "not base64 at all", keys) == set()
    assert token_matches("s3cret", "s3cret") and not token_matches(None, "s3cret")
    assert not token_matches("s3cre", "s3cret")


# ----------------------------------------------------------------------------- decisions


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, "Unpaid"),
        ({"Status": "DRAFT"}, "Unpaid"),
        ({"AmountPaid": Decimal("10"), "AmountDue": Decimal("100")}, "Partially paid"),
        ({"AmountCredited": Decimal("10"), "AmountDue": Decimal("100")}, "Partially paid"),
        ({"Status": "PAID", "AmountPaid": Decimal("110"), "AmountDue": 0}, "Paid"),
        ({"Status": "PAID", "AmountCredited": Decimal("110"), "AmountDue": 0}, "Paid"),
        ({"Status": "VOIDED"}, "Voided"),
        ({"Status": "DELETED"}, "Voided"),
    ],
)
def test_payment_status(fields: dict[str, Any], expected: str) -> None:
    assert payment_status(invoice(**fields)) == expected


def test_invoice_fields_take_the_latest_dated_payment() -> None:
    paid = invoice(
        AmountPaid=Decimal("60"),
        AmountDue=Decimal("50"),
        Payments=[
            {"Date": "/Date(1764115200000+0000)/", "Amount": Decimal("40")},  # 2025-11-26
            {"Date": "/Date(1763942400000+0000)/", "Amount": Decimal("20")},  # 2025-11-24
        ],
    )
    assert invoice_fields(paid) == {
        "Xero_Payment_Status": "Partially paid",
        "Xero_Amount_Paid": Decimal("60"),
        "Xero_Amount_Due": Decimal("50"),
        "Xero_Last_Payment_Date": "2025-11-26",
        "Xero_Last_Payment_Amount": Decimal("40"),
    }
    assert invoice_fields(invoice())["Xero_Last_Payment_Date"] is None


def test_credit_hold_follows_the_threshold_and_is_absent_without_one() -> None:
    balances = XeroBalances.model_validate(
        {"AccountsReceivable": {"Outstanding": Decimal("500"), "Overdue": Decimal("120.01")}}
    )
    assert account_fields(balances, Decimal("40"), Decimal("120"))["Xero_Credit_Hold"] is True
    assert account_fields(balances, Decimal(0), Decimal("120.01"))["Xero_Credit_Hold"] is False
    fields = account_fields(balances, Decimal("40"), None)
    assert "Xero_Credit_Hold" not in fields
    assert fields["Xero_Credit_Balance"] == Decimal("40")


def test_only_changed_fields_are_written() -> None:
    new = {"A": Decimal("1.00"), "B": "Paid", "C": None}
    assert changed_fields(new, None) == new
    assert changed_fields(new, {"A": Decimal("1"), "B": "Paid", "C": None}) == {}
    assert changed_fields(new, {"A": Decimal("1"), "B": "Unpaid"}) == {"B": "Paid", "C": None}


# ----------------------------------------------------------------------------- the relay


@pytest.fixture
def relay() -> tuple[TestClient, list[tuple[str, dict[str, Any]]]]:
    connections = [
        {
            "name": "acme",
            "xero_tenant_id": TENANT,
            "zoho_org_id": "org",
            "xero_webhook_key": KEY,
            "zoho_webhook_token": "zoho-token-123",
        }
    ]
    settings = Settings(zxs_connections=json.dumps(connections))
    sent: list[tuple[str, dict[str, Any]]] = []
    app = create_relay_app(
        settings, lambda name, args: sent.append((name, args[0])), fakeredis.FakeRedis()
    )
    return TestClient(app), sent


def delivery(*resource_ids: str, category: str = "INVOICE", tenant: str = TENANT) -> bytes:
    events = [
        {
            "resourceUrl": f"https://api.xero.com/api.xro/2.0/Invoices/{rid}",
            "resourceId": rid,
            "eventDateUtc": datetime(2026, 11, 25, tzinfo=UTC).isoformat(),
            "eventType": "UPDATE",
            "eventCategory": category,
            "tenantId": tenant,
            "tenantType": "ORGANISATION",
        }
        for rid in resource_ids
    ]
    return json.dumps(
        {"events": events, "firstEventSequence": 1, "lastEventSequence": 1, "entropy": "XYZ"}
    ).encode()


def post_xero(client: TestClient, body: bytes, key: str = KEY) -> Any:
    return client.post(
        "/webhooks/xero", content=body, headers={"x-xero-signature": xero_signature(body, key)}
    )


def test_intent_to_receive_gets_200_empty_for_a_good_signature_and_401_otherwise(
    relay: tuple[TestClient, list[Any]],
) -> None:
    client, sent = relay
    body = delivery()
    good = post_xero(client, body)
    assert good.status_code == 200 and good.content == b""
    assert post_xero(client, body, key="wrong-key").status_code == 401
    assert client.post("/webhooks/xero", content=body).status_code == 401
    assert sent == []


def test_invoice_events_become_one_feedback_job_and_repeats_are_ignored(
    relay: tuple[TestClient, list[Any]],
) -> None:
    client, sent = relay
    body = delivery("inv-1", "inv-2")
    assert post_xero(client, body).status_code == 200
    assert post_xero(client, body).status_code == 200  # Xero retried the same delivery
    assert post_xero(client, delivery("c-1", category="CONTACT")).status_code == 200
    assert post_xero(client, delivery("x", tenant="other-tenant")).status_code == 200
    assert [(name, job["connection"], job["invoice_ids"]) for name, job in sent] == [
        ("zxsync.payment_feedback", "acme", ["inv-1", "inv-2"])
    ]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"events": "x"}',
        b"[1, 2]",
        b'{"events": [{"resourceId": "a"}], "firstEventSequence": 1, '
        b'"lastEventSequence": 1, "entropy": "x"}',
    ],
)
def test_a_signed_but_malformed_delivery_gets_200_and_is_logged(
    relay: tuple[TestClient, list[Any]], body: bytes
) -> None:
    """Any answer but 200 to a signed delivery is retried for 24 h, then Xero disables the
    webhook (FACTS "The 2026 platform"): a signed body we cannot read is logged, not refused."""
    client, sent = relay
    assert post_xero(client, body).status_code == 200
    assert sent == []


def test_a_signed_delivery_with_categories_we_do_not_handle_still_feeds_its_invoices_back(
    relay: tuple[TestClient, list[Any]],
) -> None:
    """Before: one BANKTRANSACTION (or DELETE, or odd) event made the whole delivery a 400 and
    its INVOICE events were lost."""
    client, sent = relay
    events = [
        json.loads(delivery("inv-1"))["events"][0],
        {**json.loads(delivery("b-1"))["events"][0], "eventCategory": "BANKTRANSACTION"},
        {**json.loads(delivery("inv-2"))["events"][0], "eventType": "DELETE"},
        {"resourceId": "half-an-event"},
        json.loads(delivery("cn-1", category="CREDITNOTE"))["events"][0],
        json.loads(delivery("inv-3"))["events"][0],
    ]
    body = json.dumps(
        {"events": events, "firstEventSequence": 1, "lastEventSequence": 6, "entropy": "E"}
    ).encode()
    assert post_xero(client, body).status_code == 200
    jobs = {
        (job["connection"], tuple(job["invoice_ids"]), tuple(job.get("credit_note_ids", [])))
        for _, job in sent
    }
    assert jobs == {("acme", ("inv-1", "inv-3"), ()), ("acme", (), ("cn-1",))}
    assert {name for name, _ in sent} == {"zxsync.payment_feedback"}
    assert post_xero(client, body, key="wrong-key").status_code == 401


def test_zoho_notifications_and_workflow_webhooks_enqueue_one_ingest_job_per_id(
    relay: tuple[TestClient, list[Any]],
) -> None:
    client, sent = relay
    notification = {
        "server_time": 1764115200000,
        "module": "Invoices",
        "resource_uri": "https://www.zohoapis.com/crm/v7/Invoices",
        "ids": ["5843000000123001", "5843000000123002"],
        "operation": "update",
        "channel_id": 1000000068001,
        "token": "zoho-token-123",
    }
    url = "/webhooks/zoho/acme/notifications"
    assert client.post(url, json=notification).status_code == 200
    assert client.post(url, json=notification).status_code == 200  # a repeat
    assert client.post(url, json={**notification, "token": "nope"}).status_code == 401
    form = {"module": "Quotes", "id": "5843000000999001", "operation": "create"}
    assert client.post("/webhooks/zoho/acme?token=zoho-token-123", data=form).status_code == 200
    assert client.post("/webhooks/zoho/acme", data=form).status_code == 401
    assert client.post("/webhooks/zoho/nobody?token=x", data=form).status_code == 404
    bad = client.post("/webhooks/zoho/acme?token=zoho-token-123", json={"module": "Deals"})
    assert bad.status_code == 400 and "module" in bad.json()["error"]
    jobs = [job for name, job in sent if name == "zxsync.ingest"]
    assert [(j["module"], j["record_id"], j["event"]) for j in jobs] == [
        ("Invoices", "5843000000123001", "update"),
        ("Invoices", "5843000000123002", "update"),
        ("Quotes", "5843000000999001", "insert"),
    ]
    assert len({j["event_id"] for j in jobs}) == 3
    assert client.get("/openapi.json").json()["paths"].keys() >= {"/webhooks/xero"}


def test_the_relay_answers_503_and_releases_its_claims_when_the_broker_fails() -> None:
    connections = [
        {"name": "acme", "xero_tenant_id": TENANT, "zoho_org_id": "o", "xero_webhook_key": KEY}
    ]
    calls: list[str] = []

    def broken(name: str, args: list[Any]) -> None:
        calls.append(name)
        if len(calls) == 1:
            raise ConnectionError("broker down")

    store = fakeredis.FakeRedis()
    client = TestClient(
        create_relay_app(Settings(zxs_connections=json.dumps(connections)), broken, store)
    )
    body = delivery("inv-9")
    assert post_xero(client, body).status_code == 503
    assert post_xero(client, body).status_code == 200  # Xero's retry is enqueued this time
    assert calls == ["zxsync.payment_feedback"] * 2


# ----------------------------------------------------------------------------- the writer


class FakeXero:
    def __init__(self) -> None:
        self.balances: dict[str, Any] = {"AccountsReceivable": {"Outstanding": 0, "Overdue": 0}}

    def contacts(self, ids: list[str]) -> list[Any]:
        from schemas.xero import XeroContact

        return [
            XeroContact.model_validate({"ContactID": c, "Name": c, "Balances": self.balances})
            for c in ids
        ]

    def credit_notes_any(self, clauses: list[str], scope: str) -> list[Any]:
        return []

    def prepaid_any(self, collection: str, clauses: list[str], scope: str) -> list[Any]:
        return []


class FakeZoho:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[dict[str, Any]]]] = []

    def update_each(self, module: str, records: list[dict[str, Any]]) -> list[list[str]]:
        self.calls.append((module, records))
        return [[] for _ in records]


def test_feed_back_writes_changes_once_skips_older_reads_and_reports_unlinked(
    redis_url: str,
) -> None:
    import uuid

    import redis

    from schemas.connection import Connection
    from schemas.links import INVOICE_XERO, InvoiceRecord
    from tasks.payment_feedback import feed_back
    from workers.context import StageContext

    name = f"fb-{uuid.uuid4().hex[:8]}"  # the session's real Redis (locks run Lua scripts)
    ctx = StageContext(
        Connection(name=name, xero_tenant_id=TENANT, zoho_org_id="org"),
        Settings(),
        redis.Redis.from_url(redis_url, decode_responses=True),
    )
    xero, zoho = FakeXero(), FakeZoho()
    ctx.__dict__.update(xero=xero, zoho=zoho)
    ctx.idempotency.set_links(
        INVOICE_XERO,
        name,
        {"i-1": InvoiceRecord(module="Invoices", record_id="501", account_id="901")},
    )

    def at(minute: int, **fields: Any) -> XeroInvoice:
        stamp = f"/Date({1764115200000 + minute * 60_000}+0000)/"
        return invoice(UpdatedDateUTC=stamp, Contact={"ContactID": "c-1", "Name": "C"}, **fields)

    newer = at(2, Status="PAID", AmountPaid=Decimal("110"), AmountDue=Decimal("0"))
    older = at(1, AmountPaid=Decimal("10"), AmountDue=Decimal("100"))
    assert feed_back(ctx, [newer, invoice(InvoiceID="i-2")])[:2] == (2, ["i-2"])
    assert zoho.calls[0][0] == "Invoices"
    assert zoho.calls[0][1][0]["Xero_Payment_Status"] == "Paid"
    assert zoho.calls[1][0] == "Accounts" and zoho.calls[1][1][0]["id"] == "901"

    zoho.calls.clear()
    assert feed_back(ctx, [older])[:2] == (0, [])  # a late event must not undo the payment
    assert feed_back(ctx, [newer])[:2] == (0, [])  # nothing changed: nothing written
    assert zoho.calls == []

    xero.balances = {"AccountsReceivable": {"Outstanding": 5, "Overdue": 0}}
    assert feed_back(ctx, [newer])[:2] == (1, [])
    assert zoho.calls == [("Accounts", [{"id": "901", "Xero_Outstanding_Balance": Decimal(5)}])]
