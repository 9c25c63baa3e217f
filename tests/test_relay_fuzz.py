"""Hostile input at the relay (issue #9): whatever arrives at a webhook endpoint, the relay answers
200 or a 4xx whose JSON body names the reason, never a 500 (nor the 503 that hides a crash: the
store and the broker here always work), and it enqueues only what a valid, authenticated,
not-yet-seen event asks for: a replayed signed delivery enqueues nothing the second time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import fakeredis
import pytest
from fuzzing import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from relay.app import MAX_BODY_BYTES, create_relay_app
from relay.signatures import xero_signature
from workers.settings import Settings

KEY = "webhook-key-0123456789abcdef"
TOKEN = "zoho-token-123"
TENANT = "9f1c3a52-8a0e-4c1b-9d55-2f0a7e1b9c11"
CONNECTIONS = [
    {
        "name": "acme",
        "xero_tenant_id": TENANT,
        "zoho_org_id": "org",
        "xero_webhook_key": KEY,
        "zoho_webhook_token": TOKEN,
    },
    {"name": "tokenless", "xero_tenant_id": "t-2", "zoho_org_id": "org-2"},
]
SETTINGS = Settings(zxs_connections=json.dumps(CONNECTIONS))
REFUSALS = {400, 401, 404, 405, 413, 415}
# ZXS_FUZZ_EXAMPLES=2000 for a longer hunt; the default keeps `make test` quick
FUZZ = settings(
    max_examples=examples(int(os.environ.get("ZXS_FUZZ_EXAMPLES", "60"))),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

Sent = list[tuple[str, dict[str, Any]]]


STORE = fakeredis.FakeRedis()
SENT: Sent = []
CLIENT = TestClient(
    create_relay_app(SETTINGS, lambda name, args: SENT.append((name, args[0])), STORE),
    raise_server_exceptions=True,
)


@pytest.fixture(scope="module", autouse=True)
def one_event_loop() -> Iterator[None]:
    """The relay's client entered once: outside `with`, a TestClient starts an event loop
    thread per request (half of these tests' time)."""
    with CLIENT:
        yield


def relay() -> tuple[TestClient, Sent]:
    """The relay emptied for a new example: no claim in its store, nothing sent yet."""
    STORE.flushall()
    SENT.clear()
    return CLIENT, SENT


def check(answer: Any, sent: Sent) -> int:
    """The relay's promise for any request: 200 with an empty body, or a refusal with a reason
    that enqueued nothing."""
    status: int = answer.status_code
    assert status == 200 or status in REFUSALS, (status, answer.content[:300])
    if status == 200:
        assert answer.content == b""
    else:
        reason = answer.json()["error"]
        assert isinstance(reason, str) and reason.strip()
        assert sent == []
    return status


# ----------------------------------------------------------------------------- strategies

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=25,
)
ids_text = st.text(min_size=0, max_size=70)
xero_event = st.fixed_dictionaries(
    {
        "resourceUrl": st.text(max_size=30),
        "resourceId": st.one_of(ids_text, st.uuids().map(str)),
        "eventDateUtc": st.one_of(st.text(max_size=30), st.datetimes().map(str)),
        "eventType": st.sampled_from(["CREATE", "UPDATE", "DELETE", ""]),
        "eventCategory": st.sampled_from(["INVOICE", "CONTACT", "CREDITNOTE", "invoice"]),
        "tenantId": st.sampled_from([TENANT, "t-2", "unknown-tenant", "", "é" * 65]),
        "tenantType": st.sampled_from(["ORGANISATION", "APPLICATION", "USER"]),
    },
    optional={"extra": json_values},
)
xero_delivery = st.fixed_dictionaries(
    {},
    optional={
        "events": st.one_of(st.lists(xero_event, max_size=12), json_values),
        "firstEventSequence": st.one_of(st.integers(), json_values),
        "lastEventSequence": st.integers(min_value=-5),
        "entropy": st.one_of(st.text(max_size=20), json_values),
        "extra": json_values,
    },
)
record_ids = st.one_of(
    st.lists(st.from_regex(r"[0-9]{1,30}", fullmatch=True), max_size=5),
    st.lists(st.text(max_size=35), max_size=3),
    st.from_regex(r"[0-9]{1,20}(,[0-9]{1,20}){0,3}", fullmatch=True),
    st.integers(),
    json_values,
)
zoho_fields = st.fixed_dictionaries(
    {},
    optional={
        "module": st.one_of(
            st.sampled_from(["Invoices", "Quotes", "Sales_Orders", "Purchase_Orders", "Deals"]),
            json_values,
        ),
        "ids": record_ids,
        "id": record_ids,
        "record_id": record_ids,
        "operation": st.one_of(
            st.sampled_from(["insert", "create", "update", "EDIT", "delete", "approve", "x"]),
            json_values,
        ),
        "token": st.one_of(st.just(TOKEN), st.text(max_size=20), json_values),
        "channel_id": st.one_of(st.integers(), st.text(max_size=20), json_values),
        "server_time": st.one_of(
            st.integers(),
            st.datetimes().map(str),
            st.datetimes().map(lambda d: d.isoformat() + "Z"),
            st.text(max_size=30),
        ),
        "event_id": st.one_of(st.text(max_size=120), json_values),
        "extra": json_values,
    },
)
raw_bodies = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(str.encode),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.sampled_from(
        [
            b"",
            b"{",
            b"[" * 50_000,
            b"{}" * 10,
            b"\xff\xfe{}",
            b'{"a":1e999999}',
            b"1" * 5000,
            b'"\\ud800"',
            b"null",
        ]
    ),
)
connection_names = st.one_of(
    st.sampled_from(["acme", "tokenless", "nobody", "ACME", "acme.", "..", "%2e"]),
    st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40),
)


def signed(body: bytes) -> dict[str, str]:
    return {"x-xero-signature": xero_signature(body, KEY)}


# ----------------------------------------------------------------------------- Xero


@FUZZ
@given(
    body=raw_bodies,
    signature=st.one_of(
        st.none(),
        st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=60),
    ),
)
def test_unsigned_or_forged_xero_deliveries_are_401_with_a_reason(
    body: bytes, signature: str | None
) -> None:
    client, sent = relay()
    # raw header bytes (latin-1): what a hostile sender can put on the wire
    headers = {} if signature is None else {"x-xero-signature": signature.encode("latin-1")}
    answer = client.post("/webhooks/xero", content=body, headers=headers)
    if len(body) <= MAX_BODY_BYTES:
        assert check(answer, sent) == 401, answer.content


@FUZZ
@given(body=raw_bodies)
def test_a_delivery_signed_with_another_key_is_401(body: bytes) -> None:
    client, sent = relay()
    forged = {"x-xero-signature": xero_signature(body, "another-key-0123456789")}
    assert check(client.post("/webhooks/xero", content=body, headers=forged), sent) == 401


@FUZZ
@given(body=raw_bodies)
def test_any_signed_body_is_accepted_or_refused_with_a_reason(body: bytes) -> None:
    client, sent = relay()
    check(client.post("/webhooks/xero", content=body, headers=signed(body)), sent)


@FUZZ
@given(delivery=xero_delivery)
def test_signed_deliveries_enqueue_only_known_invoice_events_and_a_replay_nothing(
    delivery: dict[str, Any],
) -> None:
    client, sent = relay()
    body = json.dumps(delivery).encode()
    status = check(client.post("/webhooks/xero", content=body, headers=signed(body)), sent)
    first = list(sent)
    for name, job in first:
        assert name == "zxsync.payment_feedback" and job["connection"] == "acme"
    assert status in (200, 413)  # a signed delivery is never refused for what it carries
    if status == 200:
        events = delivery.get("events")
        wanted = {
            e["resourceId"]
            for e in (events if isinstance(events, list) else [])
            if isinstance(e, dict)
            and e.get("tenantId") == TENANT
            and e.get("eventCategory") == "INVOICE"
            and e.get("eventType") in ("CREATE", "UPDATE")
            and isinstance(e.get("resourceId"), str)
            and 1 <= len(e["resourceId"]) <= 64
        }
        assert {i for _, job in first for i in job["invoice_ids"]} == wanted
    # Xero retries the very same signed body: 200 again, nothing more enqueued
    again = client.post("/webhooks/xero", content=body, headers=signed(body))
    assert again.status_code == status
    assert sent == first


def test_a_body_over_the_limit_is_413_before_anything_else() -> None:
    client, sent = relay()
    huge = b'{"events": [], "entropy": "' + b"x" * MAX_BODY_BYTES + b'"}'
    answer = client.post("/webhooks/xero", content=huge, headers=signed(huge))
    assert check(answer, sent) == 413 and "larger" in answer.json()["error"]
    for url in ("/webhooks/zoho/acme?token=" + TOKEN, "/webhooks/zoho/acme/notifications"):
        answer = client.post(url, content=huge, headers={"content-type": "application/json"})
        assert check(answer, sent) == 413


# ----------------------------------------------------------------------------- Zoho


@FUZZ
@given(name=connection_names, body=raw_bodies, token=st.one_of(st.none(), st.text(max_size=20)))
def test_zoho_endpoints_never_fail_on_raw_bodies_or_strange_connections(
    name: str, body: bytes, token: str | None
) -> None:
    client, sent = relay()
    params = {} if token is None else {"token": token}
    path = quote(name, safe="")  # percent-encoded on the wire; the relay sees it decoded
    # a workflow webhook's token is checked before its body is read; a notification's is in it
    for url, refusals in (
        (f"/webhooks/zoho/{path}", (401, 404)),
        (f"/webhooks/zoho/{path}/notifications", (400, 401, 404)),
    ):
        answer = client.post(url, content=body, params=params)
        status = check(answer, sent)
        if status == 404 and answer.json()["error"] == "Not Found":
            continue  # the router's own 404 (a name with a slash after decoding): no route
        if name != "acme":
            assert status in refusals, (url, status)
            if status == 404:
                assert "unknown connection" in answer.json()["error"]


@FUZZ
@given(fields=zoho_fields)
def test_zoho_notifications_enqueue_one_job_per_new_valid_id_and_a_replay_nothing(
    fields: dict[str, Any],
) -> None:
    client, sent = relay()
    url = "/webhooks/zoho/acme/notifications"
    status = check(client.post(url, json=fields), sent)
    first = list(sent)
    if status == 200:
        assert fields.get("token") == TOKEN
        assert first and all(name == "zxsync.ingest" for name, _ in first)
        assert all(job["record_id"].isdigit() for _, job in first)
        assert len({job["event_id"] for _, job in first}) == len(first)
    elif fields.get("token") != TOKEN:
        assert status in (400, 401)
    assert client.post(url, json=fields).status_code == status
    assert sent == first


@FUZZ
@given(
    fields=zoho_fields,
    how=st.sampled_from(["json", "form", "query", "text"]),
    token_in=st.sampled_from(["query", "header", "none", "wrong"]),
)
def test_zoho_workflow_webhooks_in_any_shape_and_replays(
    fields: dict[str, Any], how: str, token_in: str
) -> None:
    client, sent = relay()
    fields = {k: v for k, v in fields.items() if k != "token"}
    params: dict[str, str] = {}
    headers: dict[str, str] = {}
    if token_in == "query":
        params["token"] = TOKEN
    elif token_in == "header":
        headers["x-zxs-token"] = TOKEN
    elif token_in == "wrong":
        params["token"] = TOKEN + "x"
    flat = {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
    request: dict[str, Any] = {"params": params, "headers": headers}
    if how == "json":
        request["json"] = fields
    elif how == "form":
        request["data"] = flat
    elif how == "query":
        params.update(flat)
    else:
        request["content"] = json.dumps(fields).encode()
        headers["content-type"] = "text/xml"
    url = "/webhooks/zoho/acme"
    status = check(client.post(url, **request), sent)
    if token_in in ("none", "wrong"):
        assert status == 401
    if how == "text" and token_in in ("query", "header") and fields:
        assert status == 415
    first = list(sent)
    assert all(job["connection"] == "acme" for _, job in first)
    assert client.post(url, **request).status_code == status
    assert sent == first  # the same delivery twice is enqueued once


def test_a_connection_without_a_zoho_token_refuses_every_zoho_call() -> None:
    client, sent = relay()
    body = {"module": "Invoices", "ids": ["1"], "operation": "update", "token": ""}
    for url in ("/webhooks/zoho/tokenless?token=", "/webhooks/zoho/tokenless/notifications"):
        answer = client.post(url, json=body)
        assert check(answer, sent) == 401 and "no zoho_webhook_token" in answer.json()["error"]


def test_the_routers_own_refusals_also_give_a_reason() -> None:
    client, sent = relay()
    for method, url, status in [
        ("GET", "/webhooks/xero", 405),
        ("PUT", "/webhooks/zoho/acme", 405),
        ("POST", "/webhooks/elsewhere", 404),
        ("POST", "/health", 405),
    ]:
        answer = client.request(method, url)
        assert check(answer, sent) == status and answer.json()["error"]
    assert client.request("DELETE", "/webhooks/xero").headers["allow"] == "POST"
