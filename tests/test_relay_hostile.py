"""The relay survives hostile traffic (issue #14.3): bodies are limited while streaming, the
Zoho token is checked before parsing, slow bodies time out, Redis trouble is a 503 in time and
/health says so. The loopback attack (real server, real Redis) is in test_relay_load.py."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import MutableMapping
from typing import Any

import fakeredis
import pytest
import redis
from starlette.requests import Request
from starlette.testclient import TestClient

import relay.app as relay_app
from relay.app import MAX_BODY_BYTES, Rejected, _body, create_relay_app
from workers.settings import Settings

TOKEN = "zoho-token-0123456789"
CONNECTIONS = [
    {
        "name": "acme",
        "xero_tenant_id": "t-1",
        "zoho_org_id": "org",
        "zoho_webhook_token": TOKEN,
        "xero_webhook_key": "k" * 20,
    }
]
SETTINGS = Settings(zxs_connections=json.dumps(CONNECTIONS))
GOOD = {"module": "Invoices", "id": "123", "operation": "edit"}


def client(send: Any = None, store: Any = None) -> tuple[TestClient, list[Any]]:
    sent: list[Any] = []
    app = create_relay_app(
        SETTINGS,
        send or (lambda name, args: sent.append((name, args[0]))),
        store or fakeredis.FakeRedis(),
    )
    return TestClient(app), sent


def request(headers: dict[str, str], chunks: Any) -> tuple[Request, list[int]]:
    """A request whose body arrives as `chunks` (an iterator); counts the chunks read."""
    read: list[int] = []

    async def receive() -> dict[str, Any]:
        try:
            chunk = next(chunks)
        except StopIteration:
            return {"type": "http.request", "body": b"", "more_body": False}
        read.append(len(chunk))
        return {"type": "http.request", "body": chunk, "more_body": True}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "query_string": b"",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }
    return Request(scope, receive), read


def endless(size: int = 65536, total: int = 8 * MAX_BODY_BYTES) -> Any:
    """A body far over the limit (bounded, so a relay that reads it all still finishes)."""
    for _ in range(total // size):
        yield b"x" * size


def test_a_declared_length_over_the_limit_is_refused_before_a_byte_is_read() -> None:
    req, read = request({"content-length": str(300 * 1024 * 1024)}, endless())
    with pytest.raises(Rejected) as refused:
        asyncio.run(_body(req))
    assert refused.value.status == 413 and read == []


def test_a_stream_past_the_limit_is_refused_as_soon_as_it_passes() -> None:
    for headers in ({}, {"content-length": "100"}):  # chunked, or a lying Content-Length
        req, read = request(headers, endless())
        with pytest.raises(Rejected) as refused:
            asyncio.run(_body(req))
        assert refused.value.status == 413
        assert sum(read) <= MAX_BODY_BYTES + 65536, "stopped reading at the limit"


def test_a_slow_body_times_out_with_408(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relay_app, "BODY_TIMEOUT_SECONDS", 0.3)

    async def drip() -> None:
        async def receive() -> dict[str, Any]:
            await asyncio.sleep(0.1)
            return {"type": "http.request", "body": b"x", "more_body": True}

        scope = {"type": "http", "method": "POST", "path": "/", "query_string": b"", "headers": []}
        await _body(Request(scope, receive))

    started = time.monotonic()
    with pytest.raises(Rejected) as refused:
        asyncio.run(drip())
    assert refused.value.status == 408 and time.monotonic() - started < 1.0


def test_the_workflow_token_in_a_header_is_checked_before_the_body_is_read() -> None:
    app = create_relay_app(SETTINGS, lambda *a: None, fakeredis.FakeRedis())
    read: list[int] = []

    async def receive() -> dict[str, Any]:
        read.append(1)
        return {"type": "http.request", "body": b"{", "more_body": False}

    sent_messages: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent_messages.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/webhooks/zoho/acme",
        "query_string": b"",
        "headers": [(b"x-zxs-token", b"wrong")],
        "app": app,
    }
    asyncio.run(app(scope, receive, send))
    assert sent_messages[0]["status"] == 401 and read == []


@pytest.mark.parametrize("kind", ["form", "json"])
def test_the_workflow_token_may_travel_in_the_body(kind: str) -> None:
    http, sent = client()
    for token, status in ((TOKEN, 200), (TOKEN + "x", 401), (None, 401)):
        fields = {**GOOD, "id": str(len(sent) + 100)}
        if token is not None:
            fields["token"] = token
        answer = (
            http.post("/webhooks/zoho/acme", data=fields)
            if kind == "form"
            else http.post("/webhooks/zoho/acme", json=fields)
        )
        assert answer.status_code == status, answer.text
    assert len(sent) == 1 and "token" not in json.dumps(sent)


def test_a_wrong_token_is_401_before_the_change_is_parsed() -> None:
    http, sent = client()
    malformed = {"module": "NotAModule", "ids": "x", "token": "wrong"}
    assert http.post("/webhooks/zoho/acme", json=malformed).status_code == 401
    assert http.post("/webhooks/zoho/acme/notifications", json=malformed).status_code == 401
    assert sent == []


def test_a_stalled_enqueue_is_a_503_within_two_seconds() -> None:
    http, _ = client(send=lambda name, args: time.sleep(5))
    started = time.monotonic()
    answer = http.post("/webhooks/zoho/acme", json=GOOD, headers={"x-zxs-token": TOKEN})
    assert answer.status_code == 503 and time.monotonic() - started < 2.0


class DeadRedis(fakeredis.FakeRedis):
    def ping(self, **_: Any) -> bool:
        raise redis.ConnectionError("down")


def test_health_checks_redis() -> None:
    assert client()[0].get("/health").json() == {"status": "ok", "redis": "ok"}
    answer = client(store=DeadRedis())[0].get("/health")
    assert answer.status_code == 503 and answer.json()["redis"] == "not answering"
