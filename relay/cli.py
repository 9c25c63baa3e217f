"""`zxsync relay`: serve the webhook relay (put it behind HTTPS; Xero requires it).

The server layer's defences against hostile traffic (README "Security"): a connection that has
not sent a complete request head within `HEADER_TIMEOUT_SECONDS` is closed (slowloris), at most
`MAX_CONNECTIONS` are served at once (the rest get 503 at once), request heads are capped at
`MAX_HEAD_BYTES`, access logs lose their query strings and go through the redaction, and Redis
and the broker fail fast in this process so a stalled Redis means a quick 503, not a hung sender.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Annotated, Any

import h11
import typer
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_SECONDS = 10.0
MAX_CONNECTIONS = 1000
MAX_HEAD_BYTES = 16 * 1024
REDIS_TIMEOUT_SECONDS = 1.0


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request head: uvicorn only times out idle
    keep-alive connections, so a client dripping header bytes holds its connection forever."""

    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _watch_head(self) -> None:
        """Armed while a request head is awaited (h11 IDLE on their side), cleared once it
        is complete; the body has its own deadline in the app."""
        waiting = self.conn.their_state is h11.IDLE and not self.transport.is_closing()
        if waiting and self._head_timer is None:
            self._head_timer = self.loop.call_later(HEADER_TIMEOUT_SECONDS, self._head_timeout)
        elif not waiting:
            self._stop_head_timer()

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.logger.info("relay: request head not received in time; connection closed")
            self.transport.close()


def log_config() -> dict[str, Any]:
    """uvicorn's logging with the redacting filter on its error and access handlers."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact": {"()": "workers.logs.RedactingFilter"}}
    for handler in config["handlers"].values():
        handler["filters"] = ["redact"]
    return config


def server_config(app: Any, host: str, port: int) -> Any:
    """The uvicorn configuration of the relay (also used by the hostile-traffic tests)."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=GuardedH11Protocol,
        proxy_headers=True,
        limit_concurrency=MAX_CONNECTIONS,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        timeout_keep_alive=5,
        log_config=log_config(),
    )


def fail_fast() -> None:
    """Redis commands and broker publishes of this process give up within about a second."""
    from workers.app import app as celery_app
    from workers.redis import fail_fast as redis_fail_fast

    redis_fail_fast(REDIS_TIMEOUT_SECONDS)
    celery_app.conf.broker_transport_options = {
        **celery_app.conf.broker_transport_options,
        "socket_timeout": REDIS_TIMEOUT_SECONDS,
        "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
    }
    celery_app.conf.broker_connection_timeout = REDIS_TIMEOUT_SECONDS
    celery_app.conf.task_publish_retry_policy = {"max_retries": 0}


def relay(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
) -> None:
    """Receive Xero and Zoho webhooks and enqueue them as jobs (README "Payment feedback")."""
    import uvicorn

    from relay.app import create_relay_app
    from workers.logs import configure_logging
    from workers.redis import resolve_redis_url
    from workers.settings import get_settings

    settings = get_settings()
    resolve_redis_url(settings)  # no REDIS_URL and no embedded Redis running: say so, now
    configure_logging(settings.zxs_log_level, settings.zxs_log_json)
    fail_fast()
    uvicorn.Server(server_config(create_relay_app(settings), host, port)).run()
