"""Token store: one refresh shared by all workers; rotation kept; revocation is an alert."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import redis
from cryptography.fernet import Fernet, InvalidToken

from clients.tokens import TokenCipher, TokenManager, TokenSet
from schemas.errors import AuthRevoked, ConfigurationError

URL: list[str] = []
CIPHER = TokenCipher(Fernet.generate_key().decode())


@pytest.fixture(autouse=True)
def _real_redis(redis_url: str) -> None:
    """The lock is a Lua script: use real Redis (fakeredis has no Lua without extras)."""
    URL[:] = [redis_url]


def make(refresh, bootstrap: str | None = "r0"):
    connection = f"c-{uuid.uuid4().hex[:8]}"
    return lambda: TokenManager(
        redis.Redis.from_url(URL[0], decode_responses=True),
        "Xero",
        connection,
        refresh,
        bootstrap,
        cipher=CIPHER,
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


def test_tokens_are_encrypted_at_rest_and_need_the_key() -> None:
    manager = make(lambda _: TokenSet.issued("secret-access", "secret-refresh", 1800))()
    manager.current()
    client = redis.Redis.from_url(URL[0], decode_responses=True)
    raw = str(client.get(manager._key))
    assert "secret" not in raw and CIPHER.decrypt(raw).count("secret-refresh") == 1
    with pytest.raises(ConfigurationError, match="ZXS_TOKEN_KEY"):
        TokenCipher("")
    rotated = TokenCipher(f"{Fernet.generate_key().decode()},{Fernet.generate_key().decode()}")
    with pytest.raises(InvalidToken):
        rotated.decrypt(raw)


def test_short_lived_tokens_refresh_before_they_expire() -> None:
    assert TokenSet.issued("a", "r", 4).fresh(time.time() + 2.9)
    assert not TokenSet.issued("a", "r", 4).fresh(time.time() + 3.1)


def test_a_refused_refresh_token_is_not_tried_again() -> None:
    calls: list[str] = []

    def refresh(token: str) -> TokenSet:
        calls.append(token)
        raise AuthRevoked("Xero", "token refresh refused: invalid_grant")

    factory = make(refresh)
    for _ in range(3):
        with pytest.raises(AuthRevoked, match="invalid_grant") as caught:
            factory().current()
    assert calls == ["r0"], "one refusal, then an immediate reconnect alert"
    assert "zxsync connect xero" in (caught.value.hint or "")
    manager = factory()
    manager.store(TokenSet.issued("a9", "r9", 1800))
    assert manager.current().access_token == "a9"
