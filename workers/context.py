"""What a stage works with: its connection, API clients and stores, built once per process."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import httpx
import redis

from clients.tokens import TokenManager
from clients.xero import XeroClient, refresh_xero_token
from clients.zoho import ZohoClient, refresh_zoho_token
from schemas.connection import Connection
from workers.deadletter import DeadLetterStore
from workers.history import RecordHistory
from workers.idempotency import IdempotencyStore
from workers.redis import get_redis
from workers.settings import Settings, get_settings


@lru_cache(maxsize=1)
def http_client() -> httpx.Client:
    """One pooled HTTP client per worker process (created lazily, after Celery forks)."""
    timeout = get_settings().zxs_http_timeout
    return httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)))


@dataclass
class StageContext:
    connection: Connection
    settings: Settings
    redis: redis.Redis
    attempt: int = 0
    redelivered: bool = False

    @cached_property
    def idempotency(self) -> IdempotencyStore:
        return IdempotencyStore(
            self.redis, self.settings.zxs_event_ttl_seconds, self.settings.zxs_lock_seconds
        )

    @cached_property
    def history(self) -> RecordHistory:
        return RecordHistory(self.redis)

    @cached_property
    def dead_letters(self) -> DeadLetterStore:
        return DeadLetterStore(self.redis)

    @cached_property
    def xero(self) -> XeroClient:
        s, conn = self.settings, self.connection
        refresh = refresh_xero_token(
            http_client(),
            s.xero_identity_url,
            s.xero_client_id,
            s.xero_client_secret.get_secret_value(),
        )
        bootstrap = conn.xero_refresh_token.get_secret_value() if conn.xero_refresh_token else None
        tokens = TokenManager(self.redis, "Xero", conn.name, refresh, bootstrap)
        return XeroClient(http_client(), s.xero_api_url, tokens, conn.xero_tenant_id)

    @cached_property
    def zoho(self) -> ZohoClient:
        s, conn = self.settings, self.connection
        refresh = refresh_zoho_token(
            http_client(),
            s.zoho_accounts_url,
            s.zoho_client_id,
            s.zoho_client_secret.get_secret_value(),
        )
        bootstrap = conn.zoho_refresh_token.get_secret_value() if conn.zoho_refresh_token else None
        tokens = TokenManager(self.redis, "Zoho", conn.name, refresh, bootstrap)
        return ZohoClient(http_client(), s.zoho_api_url, tokens)


def build_context(
    connection_name: str, attempt: int = 0, redelivered: bool = False
) -> StageContext:
    settings = get_settings()
    return StageContext(
        settings.connection(connection_name), settings, get_redis(), attempt, redelivered
    )
