"""What a stage works with: its connection, API clients and stores, built once per process."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import redis

from clients.tokens import TokenCipher, TokenManager, cipher_for
from clients.xero import XeroClient, refresh_xero_token
from clients.zoho import ZohoClient, refresh_zoho_token
from schemas.connection import Connection
from schemas.links import Stored
from workers.activity import CountingLimiter
from workers.deadletter import DeadLetterStore
from workers.history import RecordHistory
from workers.idempotency import IdempotencyStore
from workers.outcomes import record_history
from workers.ratelimit import xero_limiter, zoho_limiter
from workers.redis import get_redis
from workers.settings import Settings, get_settings

if TYPE_CHECKING:
    from workers.batching import Flush

S = TypeVar("S", bound=Stored)


_http_lock = threading.Lock()


def http_client() -> httpx.Client:
    """One pooled HTTP client per worker process (created lazily, after Celery forks), shared
    by its threads (httpx's client is thread-safe): the batches of one flush, sent together on
    threads, would otherwise each race to make the first and keep a pool apiece."""
    with _http_lock:
        return _http_client()


@lru_cache(maxsize=1)
def _http_client() -> httpx.Client:
    timeout = get_settings().zxs_http_timeout
    return httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)))


def token_cipher() -> TokenCipher:
    """The token store's cipher; no key, no start (ConfigurationError with how to make one)."""
    return cipher_for(get_settings().zxs_token_key.get_secret_value())


class CallsNotHere(BaseException):
    """A stage run in the flusher (workers/stage.py) reached for Xero or Zoho: it runs as its
    own task instead, where the call holds only its pool process. A BaseException, so that no
    stage's own `except` turns the refusal into a result."""


@dataclass
class StageContext:
    connection: Connection
    settings: Settings
    redis: redis.Redis
    attempt: int = 0
    redelivered: bool = False
    batch: dict[str, Any] | None = None  # what a flush sends a resumed stage (workers/batching)
    flush: Flush | None = None  # the flusher's fenced hold on the buffer, in a batch handler
    calls: bool = True  # False in the flusher: a stage that needs Xero or Zoho runs as its task

    def batch_outcome(self, element_id: str, model: type[S]) -> S | None:
        """What the flush that resumed this stage did with one of its elements, as the model
        of its kind's outcomes (schemas/links.py)."""
        outcome = ((self.batch or {}).get("outcomes") or {}).get(element_id)
        return model.model_validate(outcome) if outcome is not None else None

    @cached_property
    def idempotency(self) -> IdempotencyStore:
        return IdempotencyStore(
            self.redis, self.settings.zxs_event_ttl_seconds, self.settings.zxs_lock_seconds
        )

    @cached_property
    def history(self) -> RecordHistory:
        return record_history(self.redis)

    @cached_property
    def dead_letters(self) -> DeadLetterStore:
        return DeadLetterStore(self.redis)

    @cached_property
    def xero(self) -> XeroClient:
        self._refuse_calls("Xero")
        s, conn = self.settings, self.connection
        refresh = refresh_xero_token(
            http_client(),
            s.xero_identity_url,
            s.xero_client_id,
            s.xero_client_secret.get_secret_value(),
        )
        bootstrap = conn.xero_refresh_token.get_secret_value() if conn.xero_refresh_token else None
        tokens = TokenManager(
            self.redis, "Xero", conn.name, refresh, bootstrap, cipher=token_cipher()
        )
        limiter = xero_limiter(
            self.redis,
            conn.xero_tenant_id,
            s.xero_client_id,
            per_minute=s.zxs_xero_per_minute,
            per_day=s.xero_day_limit(),
            app_per_minute=s.zxs_xero_app_per_minute,
            concurrent=s.zxs_xero_concurrent,
            rolling=s.zxs_xero_rolling_windows,
            **self._limiter_timing(),
        )
        counted = CountingLimiter(limiter, self.redis, conn.name)  # 429s for the ops console
        return XeroClient(http_client(), s.xero_api_url, tokens, conn.xero_tenant_id, counted)

    @cached_property
    def zoho(self) -> ZohoClient:
        self._refuse_calls("Zoho")
        s, conn = self.settings, self.connection
        refresh = refresh_zoho_token(
            http_client(),
            s.zoho_accounts_url,
            s.zoho_client_id,
            s.zoho_client_secret.get_secret_value(),
        )
        bootstrap = conn.zoho_refresh_token.get_secret_value() if conn.zoho_refresh_token else None
        tokens = TokenManager(
            self.redis, "Zoho", conn.name, refresh, bootstrap, cipher=token_cipher()
        )
        limiter = zoho_limiter(
            self.redis,
            conn.zoho_org_id,
            per_minute=s.zxs_zoho_per_minute,
            per_day=s.zxs_zoho_per_day,
            concurrent=s.zxs_zoho_concurrent,
            **self._limiter_timing(),
        )
        return ZohoClient(http_client(), s.zoho_api_url, tokens, limiter)

    def _refuse_calls(self, api: str) -> None:
        if not self.calls:
            raise CallsNotHere(f"{api} is not called from here")

    def _limiter_timing(self) -> dict[str, float]:
        """A slot's lease outlives the longest call, so only a killed worker's slot expires."""
        s = self.settings
        return {
            "minute_seconds": s.zxs_limit_minute_seconds,
            "lease_seconds": s.zxs_http_timeout + 10,
            "guard_seconds": s.zxs_limit_guard_seconds,
        }


def build_context(
    connection_name: str, attempt: int = 0, redelivered: bool = False
) -> StageContext:
    settings = get_settings()
    return StageContext(
        settings.connection(connection_name), settings, get_redis(), attempt, redelivered
    )
