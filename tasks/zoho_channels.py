"""Zoho notification channels that never lapse: create (`zxsync zoho watch`), renew (beat).

A channel (`POST /actions/watch`) tells the relay of every change to the watched modules, but it
lapses at its `channel_expiry` and Zoho does not warn (FACTS §7, §11: 1 day in the v2-v3 pages,
1 week in v4+). So each connection's channel is stored here (`zxs:zoho:channel:<connection>`:
id, events, notify URL, expiry, lifetime) and a beat task renews it with `PUT /actions/watch`
once less than half its lifetime is left (ZXS_ZOHO_CHANNEL_SECONDS, default a day: within both
documented maxima). A renewal that Zoho refuses (the channel is gone) creates it again. Missed
changes are the sweep's job (tasks/zoho_sweep.py).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, cast

import redis

from schemas.connection import Connection
from schemas.errors import ConfigurationError, ValidationFailed
from schemas.wire import dumps, loads
from workers import keys
from workers.app import app
from workers.context import StageContext, build_context
from workers.logs import log
from workers.policies import HOUSEKEEPING
from workers.settings import Settings, get_settings

RENEW_TASK = "zxsync.zoho_channel_renew"


@dataclass(frozen=True)
class ZohoChannel:
    channel_id: str
    events: list[str]
    notify_url: str
    expiry: float  # epoch seconds, as Zoho answered
    lifetime: float  # seconds asked for

    def expires(self) -> datetime:
        return datetime.fromtimestamp(self.expiry, UTC)


def channel_key(connection: str) -> str:
    return keys.ZOHO_CHANNEL(connection)


def stored_channel(redis_client: redis.Redis, connection: str) -> ZohoChannel | None:
    raw = redis_client.get(channel_key(connection))
    if not raw:
        return None
    fields = loads(cast(str, raw))  # numbers come back as Decimal: times are floats here
    return ZohoChannel(
        **{**fields, "expiry": float(fields["expiry"]), "lifetime": float(fields["lifetime"])}
    )


def channel_expiry(connection: str, *, redis_client: redis.Redis | None = None) -> datetime | None:
    """When the connection's Zoho notification channel lapses (None: no channel was made).
    Read-only, for `zxsync` and the console."""
    from workers.redis import get_redis

    channel = stored_channel(redis_client or get_redis(), connection)
    return channel.expires() if channel else None


def needs_renewal(channel: ZohoChannel, now: float) -> bool:
    """Pure: renew once less than half the channel's lifetime is left (well before expiry)."""
    return channel.expiry - now < channel.lifetime / 2


def channel_events(conn: Connection) -> list[str]:
    """Every module the connection syncs from, all operations."""
    return [f"{module}.all" for module in conn.triggers]


def default_notify_url(settings: Settings, conn: Connection) -> str | None:
    base = settings.zxs_relay_url.rstrip("/")
    return f"{base}/webhooks/zoho/{conn.name}/notifications" if base else None


def watch(
    ctx: StageContext, notify_url: str | None = None, now: float | None = None
) -> ZohoChannel:
    """Create the connection's channel, or renew the stored one; stored with its expiry."""
    conn, settings = ctx.connection, ctx.settings
    now = time.time() if now is None else now
    stored = stored_channel(ctx.redis, conn.name)
    url = (
        notify_url or (stored.notify_url if stored else None) or default_notify_url(settings, conn)
    )
    if not url:
        raise ConfigurationError(
            f"no notify URL for '{conn.name}'",
            hint="Set ZXS_RELAY_URL to the relay's public https URL, or pass --notify-url.",
        )
    if conn.zoho_webhook_token is None:
        raise ConfigurationError(
            f"connection '{conn.name}' has no zoho_webhook_token",
            field="zoho_webhook_token",
            hint="Set zoho_webhook_token (at most 50 characters): the channel sends it back.",
        )
    lifetime = settings.zxs_zoho_channel_seconds
    channel_id = stored.channel_id if stored else str(10**12 + secrets.randbelow(9 * 10**12))
    item: dict[str, Any] = {
        "channel_id": int(channel_id),
        "events": channel_events(conn),
        "notify_url": url,
        "token": conn.zoho_webhook_token.get_secret_value(),
        "channel_expiry": datetime.fromtimestamp(now + lifetime, UTC).isoformat(timespec="seconds"),
    }
    try:
        payload = ctx.zoho.json(
            "PUT" if stored else "POST", "actions/watch", body={"watch": [item]}
        )
    except ValidationFailed:
        if not stored:
            raise
        log.warning("zoho_channel.renew_refused", connection=conn.name, channel=channel_id)
        payload = ctx.zoho.json("POST", "actions/watch", body={"watch": [item]})
    expiry = _answered_expiry(payload) or now + lifetime
    channel = ZohoChannel(channel_id, item["events"], url, expiry, lifetime)
    ctx.redis.set(channel_key(conn.name), dumps(asdict(channel)))
    log.info(
        "zoho_channel.watching",
        connection=conn.name,
        channel=channel_id,
        expires=channel.expires().isoformat(),
        renewed=stored is not None,
    )
    return channel


def _answered_expiry(payload: Any) -> float | None:
    try:
        events = payload["watch"][0]["details"]["events"]
        return min(datetime.fromisoformat(e["channel_expiry"]).timestamp() for e in events)
    except (KeyError, IndexError, TypeError, ValueError):
        return None


@app.task(name=RENEW_TASK, **HOUSEKEEPING)
def zoho_channel_renew() -> int:
    """Beat: renew every stored channel with less than half its lifetime left; renewed count.
    A connection whose renewal fails is logged and tried again at the next tick."""
    renewed = 0
    now = time.time()
    for name in get_settings().connections():
        ctx = build_context(name)
        channel = stored_channel(ctx.redis, name)
        if channel is None or not needs_renewal(channel, now):
            continue
        try:
            watch(ctx, now=now)
            renewed += 1
        except Exception as exc:  # one connection's trouble is not the others'
            log.error(
                "zoho_channel.renew_failed",
                connection=name,
                error=str(exc),
                expires=channel.expires().isoformat(),
            )
    return renewed
