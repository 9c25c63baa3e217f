"""Schemathesis against the relay's own OpenAPI (/openapi.json), in process over ASGI.

Every operation gets requests generated from its schema, sent twice: as generated (whatever
token or signature schemathesis made up) and authenticated (the connection's token, a valid Xero
signature over the exact bytes sent), so generated bodies reach the parsing and enqueueing code
and not only the door. Checked: no server error (the relay's broker and store work here, so a
503 would be a crash it hid), every refusal carries its reason, and a refusal enqueues nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
import schemathesis
from fuzzing import examples
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from starlette.testclient import TestClient

from relay.app import create_relay_app
from relay.signatures import xero_signature
from workers.settings import Settings

KEY = "webhook-key-0123456789abcdef"
TOKEN = "zoho-token-123"
CONNECTIONS = [
    {
        "name": "acme",
        "xero_tenant_id": "9f1c3a52-8a0e-4c1b-9d55-2f0a7e1b9c11",
        "zoho_org_id": "org",
        "xero_webhook_key": KEY,
        "zoho_webhook_token": TOKEN,
    }
]
SENT: list[tuple[str, dict[str, Any]]] = []
APP = create_relay_app(
    Settings(zxs_connections=json.dumps(CONNECTIONS)),
    lambda name, args: SENT.append((name, args[0])),
    fakeredis.FakeRedis(),
)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    """One client for every case: outside `with`, a TestClient starts an event loop thread per
    request (~700 here, half of the test's time)."""
    with TestClient(APP) as entered:
        yield entered


def client_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Schemathesis's transport arguments as httpx's client takes them without deprecation:
    no per-request cookies (the relay's API declares none) and raw bodies as `content`."""
    kwargs = {k: v for k, v in kwargs.items() if k != "app"}
    assert not kwargs.pop("cookies", None), "the relay's API takes no cookies"
    if isinstance(kwargs.get("data"), str | bytes):
        kwargs["content"] = kwargs.pop("data")
    return kwargs


def authenticated(case: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The same request as the connection's legitimate sender would sign or token it."""
    kwargs = {**kwargs, "headers": dict(kwargs.get("headers") or {})}
    path = case.operation.path
    if "{connection}" in path:
        kwargs["url"] = path.replace("{connection}", "acme")
    if path == "/webhooks/zoho/{connection}":
        kwargs["params"] = {**(kwargs.get("params") or {}), "token": TOKEN}
    if path.endswith("/notifications") and isinstance(kwargs.get("json"), dict):
        kwargs["json"] = {**kwargs["json"], "token": TOKEN}
    if path == "/webhooks/xero":
        body = kwargs.pop("json", None)
        content = kwargs.pop("content", None) or json.dumps(body).encode()
        kwargs["content"] = content
        kwargs["headers"]["x-xero-signature"] = xero_signature(content, KEY)
    return kwargs


@schema.parametrize()
@settings(
    max_examples=examples(25),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_operation_ever_answers_a_server_error(case: Any, client: TestClient) -> None:
    plain = client_kwargs(case.as_transport_kwargs())
    for kwargs in (plain, authenticated(case, plain)):
        SENT.clear()
        response = client.request(**kwargs)
        case.validate_response(response, checks=[not_a_server_error])
        assert response.status_code < 500, (response.status_code, response.content[:300])
        if response.status_code >= 400 and case.operation.path != "/health":
            assert response.headers.get("content-type") == "application/json", (
                response.status_code,
                response.content[:200],
                kwargs.get("url"),
            )
            error = response.json()["error"]
            assert isinstance(error, str) and error.strip()
            assert SENT == []
