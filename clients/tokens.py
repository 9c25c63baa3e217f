"""OAuth2 access tokens shared by every worker through Redis, refreshed by exactly one.

Xero rotates the refresh token on every use and Zoho caps refreshes per 10 minutes, so two
workers refreshing at once is how integrations end in `invalid_grant` (FACTS.md, OAuth2). The
newest token set lives in Redis; a refresh happens under a Redis lock and re-reads the store
first, so a worker that waited reuses the token another one just fetched.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import redis

from schemas.errors import AuthRevoked

REFRESH_MARGIN_SECONDS = 60.0


@dataclass(frozen=True)
class TokenSet:
    access_token: str
    refresh_token: str
    expires_at: float
    api_domain: str | None = None

    def fresh(self, now: float) -> bool:
        return bool(self.access_token) and now < self.expires_at - REFRESH_MARGIN_SECONDS


Refresh = Callable[[str], TokenSet]


class TokenManager:
    """Hands out a valid access token for one provider and connection."""

    def __init__(
        self,
        redis_client: redis.Redis,
        provider: str,
        connection: str,
        refresh: Refresh,
        bootstrap_refresh_token: str | None,
    ) -> None:
        self._redis = redis_client
        self._key = f"zxs:tokens:{provider}:{connection}"
        self._provider = provider
        self._connection = connection
        self._refresh = refresh
        self._bootstrap = bootstrap_refresh_token

    def current(self) -> TokenSet:
        """A token set whose access token is valid for at least another minute."""
        stored = self._load()
        if stored and stored.fresh(time.time()):
            return stored
        return self._refresh_locked(stale=stored.access_token if stored else None)

    def refresh_after_401(self, rejected_access_token: str) -> TokenSet:
        """Refresh once after the API refused a token, unless another worker already did."""
        return self._refresh_locked(stale=rejected_access_token)

    def _refresh_locked(self, stale: str | None) -> TokenSet:
        with self._redis.lock(self._key + ":lock", timeout=60, blocking_timeout=60):
            stored = self._load()
            if stored and stored.access_token != stale and stored.fresh(time.time()):
                return stored
            refresh_token = stored.refresh_token if stored else self._bootstrap
            if not refresh_token:
                raise AuthRevoked(
                    self._provider,
                    f"connection '{self._connection}' has no {self._provider} token",
                    hint=f"Run `zxsync connect {self._provider.lower()}` for this connection.",
                )
            fresh = self._refresh(refresh_token)
            if fresh.api_domain is None and stored and stored.api_domain:
                fresh = TokenSet(**{**asdict(fresh), "api_domain": stored.api_domain})
            self._redis.set(self._key, json.dumps(asdict(fresh)))
            return fresh

    def _load(self) -> TokenSet | None:
        raw = self._redis.get(self._key)
        return TokenSet(**json.loads(raw)) if raw else None
