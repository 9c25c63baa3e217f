"""Token store: one refresh shared by all workers; rotation kept; revocation is an alert."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import redis

from clients.tokens import TokenManager, TokenSet
from schemas.errors import AuthRevoked

URL: list[str] = []


@pytest.fixture(autouse=True)
def _real_redis(redis_url: str) -> None:
    """The lock is a Lua script: use real Redis (fakeredis has no Lua without extras)."""
    URL[:] = [redis_url]


def make(refresh, bootstrap: str | None = "r0"):  # type: ignore[no-untyped-def]
    connection = f"c-{uuid.uuid4().hex[:8]}"
    return lambda: TokenManager(
        redis.Redis.from_url(URL[0], decode_responses=True), "Xero", connection, refresh, bootstrap
    )


def test_concurrent_workers_refresh_once_and_share_the_rotated_token() -> None:
    calls: list[str] = []

    def refresh(token: str) -> TokenSet:
        calls.append(token)
        time.sleep(0.05)
        return TokenSet(f"a{len(calls)}", f"r{len(calls)}", time.time() + 1800)

    manager = make(refresh)
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(manager().current().access_token))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["r0"] and set(results) == {"a1"}


def test_401_refreshes_once_then_uses_the_rotated_refresh_token() -> None:
    calls: list[str] = []

    def refresh(token: str) -> TokenSet:
        calls.append(token)
        return TokenSet(f"a{len(calls)}", f"r{len(calls)}", time.time() + 1800)

    manager = make(refresh)()
    first = manager.current().access_token
    assert manager.refresh_after_401(first).access_token == "a2"
    assert manager.refresh_after_401(first).access_token == "a2", "stale token: reuse, no refresh"
    assert calls == ["r0", "r1"]


def test_missing_token_is_a_reconnect_alert() -> None:
    with pytest.raises(AuthRevoked, match="connect"):
        make(lambda _: TokenSet("", "", 0), bootstrap=None)().current()
