"""A connection's health from what Redis already holds: pure reading, no API call.

Tokens (the stores of clients/tokens.py, including a refused refresh token it remembers), the
Xero limiter's windows (workers/ratelimit.py), the admission room (workers/admission.py), open
dead letters, and the activity counters (workers/activity.py). The console page, /metrics and
`zxsync connections` all show this one reading, so they never disagree.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, cast

import redis

from clients.tokens import TokenCipher
from console.providers import Scopes, channel_expiry, granted_scopes
from schemas.connection import Connection
from workers import activity, keys
from workers.admission import Entry, admitted_key, paused, waiting_key
from workers.deadletter import DeadLetter, DeadLetterStore
from workers.history import inflight_key
from workers.redact import redact
from workers.settings import Settings

Level = Literal["healthy", "attention", "unhealthy"]
LEVEL_ORDER: dict[Level, int] = {"healthy": 0, "attention": 1, "unhealthy": 2}
# an expired access token this long, with work to do, means refreshing it keeps failing
REFRESH_STALE_SECONDS = 600.0
DAY_BUDGET_WARNING = 0.9


@dataclass(frozen=True)
class TokenState:
    provider: str
    state: Literal["ok", "not used yet", "refresh failing", "reconnect needed"]
    detail: str = ""
    command: str = ""


@dataclass(frozen=True)
class XeroUsage:
    calls_today: int
    day_limit: int
    minute_used: int
    minute_limit: int

    @property
    def remaining_today(self) -> int:
        return max(self.day_limit - self.calls_today, 0)

    @property
    def minute_headroom(self) -> int:
        return max(self.minute_limit - self.minute_used, 0)


@dataclass(frozen=True)
class ConnectionHealth:
    name: str
    level: Level
    reasons: list[str]
    tokens: list[TokenState]
    xero: XeroUsage
    waiting: int
    in_flight: int
    admitted: int
    window: int
    oldest_waiting_seconds: float | None
    dead_letters: dict[str, int]
    paused: dict[str, Any] | None
    last_sync: datetime | None
    xero_rate_limited: int
    hourly: list[tuple[datetime, int, int]] = field(default_factory=list)
    scopes: list[Scopes] | None = None
    channel_expiry: datetime | None = None

    @property
    def open_dead_letters(self) -> int:
        return sum(self.dead_letters.values())

    @property
    def words(self) -> str:
        """The health in a few words, for the page, the terminal and alerts."""
        return "; ".join(self.reasons) if self.reasons else "healthy"


def token_state(
    redis_client: redis.Redis,
    provider: str,
    connection: Connection,
    cipher: TokenCipher | None,
    busy: bool,
    now: float,
) -> TokenState:
    """ok / not used yet / refresh failing / reconnect needed, from the token store."""
    key = keys.TOKENS(provider, connection.name)
    command = f"zxsync connect {provider.lower()} --connection {connection.name}"
    stored, refused = cast(list[str | None], redis_client.mget([key, key + ":revoked"]))
    if refused:
        why = redact(str(refused).partition(" ")[2]) or "the refresh token was refused"
        return TokenState(provider, "reconnect needed", why, command)
    bootstrap = (
        connection.xero_refresh_token if provider == "Xero" else connection.zoho_refresh_token
    )
    if not stored:
        if bootstrap:
            return TokenState(provider, "not used yet", "first call refreshes the configured token")
        return TokenState(provider, "reconnect needed", "no token stored or configured", command)
    if cipher is None or not busy:
        return TokenState(provider, "ok")
    try:
        expires_at = float(json.loads(cipher.decrypt(stored))["expires_at"])
    except Exception:
        return TokenState(
            provider, "refresh failing", "stored tokens do not decrypt with ZXS_TOKEN_KEY", command
        )
    if now - expires_at > REFRESH_STALE_SECONDS:
        minutes = int((now - expires_at) // 60)
        return TokenState(
            provider, "refresh failing", f"expired {minutes} min ago while jobs wait", command
        )
    return TokenState(provider, "ok")


def xero_usage(redis_client: redis.Redis, connection: Connection, settings: Settings) -> XeroUsage:
    """Calls the limiter counted today (`workers.ratelimit.xero_calls_today`, the tier's limit)
    and in the tenant's current minute window (the same keys as workers/ratelimit.py,
    placeholders for calls Xero reported included)."""
    from workers.ratelimit import xero_calls_today

    today = xero_calls_today(connection.name, settings=settings, redis_client=redis_client)
    log = keys.XERO_MINUTE(connection.xero_tenant_id)
    length = int(settings.zxs_limit_minute_seconds * 1000)
    now_ms = int(time.time() * 1000)
    if settings.zxs_xero_rolling_windows:
        minute = int(redis_client.zcount(log, f"({now_ms - length}", "+inf"))
    elif anchor_raw := redis_client.get(log + ":anchor"):
        anchor = int(float(str(anchor_raw)))
        start = anchor + ((now_ms - anchor) // length) * length
        minute = int(redis_client.zcount(log, start, f"({start + length}"))
    else:
        minute = 0
    return XeroUsage(today.used, today.limit, minute, settings.zxs_xero_per_minute)


def _assess(h: ConnectionHealth, stall_seconds: float) -> tuple[Level, list[str]]:
    """Pure: the level and the reasons, worst first."""
    bad, warn = [], []
    for t in h.tokens:
        if t.state in {"reconnect needed", "refresh failing"}:
            bad.append(f"{t.provider} {t.state}")
    if h.open_dead_letters:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(h.dead_letters.items()))
        bad.append(f"{h.open_dead_letters} dead letter(s): {kinds}")
    if h.xero.calls_today >= h.xero.day_limit:
        bad.append("Xero daily limit reached: new work waits for tomorrow")
    elif h.xero.calls_today >= DAY_BUDGET_WARNING * h.xero.day_limit:
        warn.append(f"Xero daily budget {h.xero.calls_today}/{h.xero.day_limit}")
    if h.scopes:
        for s in h.scopes:
            if s.missing:
                bad.append(f"{s.provider} scopes missing: {' '.join(s.missing)}")
    if h.paused:
        warn.append(f"paused by {h.paused.get('by', '?')}")
    elif h.oldest_waiting_seconds is not None and h.oldest_waiting_seconds > stall_seconds:
        warn.append(f"oldest job waiting {int(h.oldest_waiting_seconds // 60)} min")
    if h.channel_expiry is not None and h.channel_expiry.timestamp() - time.time() < 86_400:
        warn.append("Zoho notification channel expires within a day")
    level: Level = "unhealthy" if bad else "attention" if warn else "healthy"
    return level, bad + warn


def read_health(
    redis_client: redis.Redis,
    settings: Settings,
    letters: list[DeadLetter] | None = None,
    hours: int = 24,
) -> list[ConnectionHealth]:
    """Every configured connection's health, in name order."""
    now = time.time()
    if letters is None:
        letters = DeadLetterStore(redis_client).list(count=1_000_000)
    by_connection: dict[str, Counter[str]] = {}
    for letter in letters:
        by_connection.setdefault(letter.connection, Counter())[letter.error_kind] += 1
    keys = settings.zxs_token_key.get_secret_value()
    cipher = TokenCipher(keys) if keys else None
    result = []
    for name, conn in sorted(settings.connections().items()):
        pipe = redis_client.pipeline(transaction=False)
        pipe.llen(waiting_key(name))
        pipe.hlen(inflight_key(name))
        pipe.zcard(admitted_key(name))
        pipe.lindex(waiting_key(name), 0)
        waiting, in_flight, admitted, first = pipe.execute()
        oldest = now - Entry.parse(str(first)).queued_at if first else None
        busy = bool(int(waiting) or int(in_flight))
        draft = ConnectionHealth(
            name=name,
            level="healthy",
            reasons=[],
            tokens=[
                token_state(redis_client, provider, conn, cipher, busy, now)
                for provider in ("Xero", "Zoho")
            ],
            xero=xero_usage(redis_client, conn, settings),
            waiting=int(waiting),
            in_flight=int(in_flight),
            admitted=int(admitted),
            window=settings.zxs_tenant_window,
            oldest_waiting_seconds=oldest,
            dead_letters=dict(by_connection.get(name, Counter())),
            paused=paused(redis_client, name),
            last_sync=activity.last_sync(redis_client, name),
            xero_rate_limited=activity.xero_rate_limited(redis_client, name),
            hourly=activity.hourly(redis_client, name, hours) if hours else [],
            scopes=granted_scopes(redis_client, conn, settings),
            channel_expiry=channel_expiry(redis_client, conn),
        )
        level, reasons = _assess(draft, settings.zxs_stall_seconds)
        result.append(replace(draft, level=level, reasons=reasons))
    return result


def worst(healths: list[ConnectionHealth]) -> Level:
    return max((h.level for h in healths), key=LEVEL_ORDER.__getitem__, default="healthy")


def age_words(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 90:
        return f"{int(seconds)} s"
    if seconds < 5400:
        return f"{int(seconds // 60)} min"
    if seconds < 172_800:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} d"


def since(at: datetime | None) -> str:
    """'12 min ago' or 'never'."""
    if at is None:
        return "never"
    return f"{age_words((datetime.now(UTC) - at).total_seconds())} ago"
