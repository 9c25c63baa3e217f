"""OAuth2 access tokens shared by every worker through Redis, refreshed by exactly one.

Xero rotates the refresh token on every use and Zoho caps refreshes per 10 minutes, so two
workers refreshing at once is how integrations end in `invalid_grant` (FACTS.md, OAuth2). The
newest token set lives in Redis, encrypted with Fernet (a refresh token is a standing key to the
customer's books); a refresh happens under a Redis lock and re-reads the store first, so a worker
that waited reuses the token another one just fetched. A refresh token the server refused is
remembered, so later jobs fail at once with "reconnect" instead of hammering the token endpoint.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import lru_cache

import redis
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from schemas.errors import AuthRevoked, ConfigurationError
from workers import keys

REFRESH_MARGIN_SECONDS = 60.0
KEY_HINT = (
    "Set ZXS_TOKEN_KEY to a Fernet key: python -c "
    '"from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
)


@dataclass(frozen=True)
class TokenSet:
    access_token: str
    refresh_token: str
    expires_at: float
    api_domain: str | None = None
    issued_at: float = 0.0
    scope: str | None = None  # what the consent granted, space-separated (None: not recorded)

    @classmethod
    def issued(
        cls,
        access_token: str,
        refresh_token: str,
        expires_in: float,
        api_domain: str | None = None,
        scope: str | list[str] | None = None,
    ) -> TokenSet:
        now = time.time()
        if isinstance(scope, list):
            scope = " ".join(scope)
        return cls(access_token, refresh_token, now + expires_in, api_domain, now, scope)

    def scopes(self) -> frozenset[str] | None:
        """The granted scopes: as recorded, else the `scope` claim of a JWT access token (Xero's
        are JWTs; only read, not verified: it is our own token, for display and checks)."""
        if self.scope is not None:
            return frozenset(self.scope.split())
        parts = self.access_token.split(".")
        if len(parts) != 3:
            return None
        try:
            claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        except ValueError:
            return None
        claim = claims.get("scope") if isinstance(claims, dict) else None
        if isinstance(claim, str):
            claim = claim.split()
        return frozenset(str(s) for s in claim) if isinstance(claim, list) else None

    def fresh(self, now: float) -> bool:
        """Valid for a while yet: a minute, or a quarter of its life when that is shorter."""
        margin = REFRESH_MARGIN_SECONDS
        if self.issued_at:
            margin = min(margin, (self.expires_at - self.issued_at) / 4)
        return bool(self.access_token) and now < self.expires_at - margin


Refresh = Callable[[str], TokenSet]


DECRYPTED_KEPT = 256  # token sets kept decrypted per cipher (two per connection in use)


class TokenCipher:
    """Fernet encryption of stored token sets; several keys (comma-separated) allow rotation:
    the first encrypts, any of them decrypts."""

    def __init__(self, keys: str) -> None:
        parts = [k.strip() for k in keys.split(",") if k.strip()]
        if not parts:
            raise ConfigurationError(
                "ZXS_TOKEN_KEY is not set: tokens are never stored in clear", hint=KEY_HINT
            )
        try:
            self._fernet = MultiFernet([Fernet(k) for k in parts])
        except ValueError as exc:
            raise ConfigurationError(
                f"ZXS_TOKEN_KEY is not a Fernet key: {exc}", hint=KEY_HINT
            ) from None
        self._plain: dict[str, str] = {}  # ciphertext -> text (a token set is rewritten new)

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def decrypt(self, token: str) -> str:
        """The stored text, decrypted once per ciphertext: every API call reads its token set
        from Redis, and its HMAC check and AES were a tenth of a millisecond each (issue #19)."""
        plain = self._plain.get(token)
        if plain is None:
            plain = self._fernet.decrypt(token.encode()).decode()
            if len(self._plain) >= DECRYPTED_KEPT:
                self._plain.clear()
            self._plain[token] = plain
        return plain


@lru_cache(maxsize=4)
def cipher_for(key: str) -> TokenCipher:
    """One cipher per ZXS_TOKEN_KEY value: its keys parsed once and what it decrypted kept. A
    cipher made per stage and per look at the connections parsed the keys and decrypted the
    same token set again each time (issue #19)."""
    return TokenCipher(key)


class TokenManager:
    """Hands out a valid access token for one provider and connection."""

    def __init__(
        self,
        redis_client: redis.Redis,
        provider: str,
        connection: str,
        refresh: Refresh,
        bootstrap_refresh_token: str | None,
        *,
        cipher: TokenCipher,
    ) -> None:
        self._redis = redis_client
        self._key = keys.TOKENS(provider, connection)
        self._provider = provider
        self._connection = connection
        self._refresh = refresh
        self._bootstrap = bootstrap_refresh_token
        self._cipher = cipher

    def stored(self) -> TokenSet | None:
        """The stored token set as it is, without refreshing (for status and checks)."""
        return self._load()

    def current(self) -> TokenSet:
        """A token set whose access token is valid for a while yet."""
        stored = self._load()
        if stored and stored.fresh(time.time()):
            return stored
        return self._refresh_locked(stale=stored.access_token if stored else None)

    def refresh_after_401(self, rejected_access_token: str) -> TokenSet:
        """Refresh once after the API refused a token, unless another worker already did."""
        return self._refresh_locked(stale=rejected_access_token)

    def store(self, tokens: TokenSet) -> None:
        """Save a token set from a new consent (`zxsync connect`), clearing any revocation."""
        with self._redis.lock(self._key + ":lock", timeout=60, blocking_timeout=60):
            self._save(tokens)
            self._redis.delete(self._key + ":revoked")

    def _refresh_locked(self, stale: str | None) -> TokenSet:
        with self._redis.lock(self._key + ":lock", timeout=60, blocking_timeout=60):
            stored = self._load()
            if stored and stored.access_token != stale and stored.fresh(time.time()):
                return stored
            refresh_token = stored.refresh_token if stored else self._bootstrap
            if not refresh_token:
                raise self._reconnect(f"connection '{self._connection}' has no token")
            fingerprint = hashlib.sha256(refresh_token.encode()).hexdigest()
            refused = self._redis.get(self._key + ":revoked")
            if refused and str(refused).startswith(fingerprint):
                raise self._reconnect(str(refused).partition(" ")[2])
            try:
                fresh = self._refresh(refresh_token)
            except AuthRevoked as exc:
                self._redis.set(self._key + ":revoked", f"{fingerprint} {exc.message}")
                raise
            if fresh.api_domain is None and stored and stored.api_domain:
                fresh = replace(fresh, api_domain=stored.api_domain)
            if fresh.scope is None and stored and stored.scope:  # a refresh keeps the consent
                fresh = replace(fresh, scope=stored.scope)
            self._save(fresh)
            return fresh

    def _reconnect(self, why: str) -> AuthRevoked:
        command = f"zxsync connect {self._provider.lower()} --connection {self._connection}"
        return AuthRevoked(self._provider, why, hint=f"Reconnect: run `{command}`.")

    def _save(self, tokens: TokenSet) -> None:
        self._redis.set(self._key, self._cipher.encrypt(json.dumps(asdict(tokens))))

    def _load(self) -> TokenSet | None:
        raw = self._redis.get(self._key)
        if not raw:
            return None
        if str(raw).startswith("{"):  # written before encryption at rest: encrypt it now
            legacy = TokenSet(**json.loads(str(raw)))
            self._save(legacy)
            return legacy
        try:
            return TokenSet(**json.loads(self._cipher.decrypt(str(raw))))
        except InvalidToken:
            raise ConfigurationError(
                f"the stored {self._provider} tokens of '{self._connection}' do not decrypt "
                "with ZXS_TOKEN_KEY",
                hint="Restore the previous key (keys may be listed comma-separated) or "
                f"reconnect with `zxsync connect {self._provider.lower()}`.",
            ) from None


def granted_scopes(
    connection: str,
    provider: str = "Xero",
    *,
    redis_client: redis.Redis | None = None,
    cipher: TokenCipher | None = None,
) -> frozenset[str] | None:
    """The scopes the connection's stored consent granted (None: no token, or not known).

    Read-only, never refreshes: for `zxsync check` and the console. Defaults to the process's
    Redis and token key."""
    if redis_client is None or cipher is None:
        from workers.context import token_cipher
        from workers.redis import get_redis

        redis_client = redis_client or get_redis()
        cipher = cipher or token_cipher()

    def no_refresh(_: str) -> TokenSet:
        raise AssertionError("granted_scopes never refreshes")

    stored = TokenManager(redis_client, provider, connection, no_refresh, None, cipher=cipher)
    tokens = stored.stored()
    return tokens.scopes() if tokens else None
