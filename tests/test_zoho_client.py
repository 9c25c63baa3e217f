"""The Zoho client against a recorded transport: reads by ids stay within Zoho's 100 a call."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import httpx

from clients.tokens import TokenSet
from clients.zoho import ZohoClient


def client(seen: list[list[str]]) -> ZohoClient:
    def answer(request: httpx.Request) -> httpx.Response:
        ids = request.url.params["ids"].split(",")
        seen.append(ids)
        return httpx.Response(200, json={"data": [{"id": i} for i in ids]})

    http = httpx.Client(transport=httpx.MockTransport(answer))
    token = TokenSet("t", "r", 10**10, "https://zoho.test")
    tokens: Any = SimpleNamespace(current=lambda: token)
    return ZohoClient(http, "https://zoho.test", tokens)


def test_more_than_100_ids_are_read_in_calls_of_100_in_order() -> None:
    """Zoho refuses more than 100 `ids` (FACTS §3; the sandbox too): a caller with more, such as
    contact sync over many accounts, must still get every record."""
    seen: list[list[str]] = []
    ids = [str(n) for n in range(250)]
    rows = client(seen).get_records("Accounts", ids, ["Account_Name"])
    assert [len(chunk) for chunk in seen] == [100, 100, 50]
    assert [r["id"] for r in rows] == ids
