"""kombu's Redis transports (`redis://`, `rediss://`, `sentinel://`) with one repair, so a worker
outlives a Redis failover or restart.

Celery 5.7's consumer, when it loses the broker, closes its connection twice: `collect()`, then
`close()`. While Redis is still unreachable the first close of the consumer's channel can fail
halfway (before the channel counts as closed) and `collect()` drops the channel's transport
anyway; the second close then restores the unacknowledged messages through a new pool, whose
parameters kombu reads from the dropped transport: `AttributeError: 'NoneType' object has no
attribute 'hostname'`. Celery reads that as an unrecoverable error and the worker process exits
(seen in 1 of 4 Sentinel failover runs, tests/test_redis_failover.py); its documents waited for
the visibility timeout, or for ever with no other worker. Here that channel answers a connection
error instead, which kombu's close ignores and Celery rides out by reconnecting; the messages
stay in kombu's unacked index and come back after the visibility timeout like a dead worker's.

And one saving (issue #19): kombu's channel built a new redis-py client for every publish and
every ack (`conn_or_acquire`), and a client's construction (its table of ~200 response
callbacks) cost more CPU than the command it sent: 2.5 ms per invoice in the raw bench. The
channel keeps one client per connection pool instead; redis-py clients are thread-safe (each
command takes a connection from the pool), and a new pool (kombu drops the pools when the
connection closes) gets a new client.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import kombu.transport
import redis
from kombu.transport import redis as kombu_redis


class _Repaired:
    """A channel that cannot reach Redis once its transport was dropped says so as a
    connection error (see the module's docstring)."""

    connection: Any

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise redis.ConnectionError("the broker connection was closed while Redis was down")
        params: dict[str, Any] = super()._connparams(asynchronous)  # type: ignore[misc]
        return params

    _reused_client: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        """The client given, else this channel's one client on its current pool (kombu's
        builds a client per call: see the module's docstring)."""
        if client:
            yield client
            return
        pool = self.pool  # type: ignore[attr-defined]
        reused = self._reused_client
        if reused is None or reused.connection_pool is not pool:
            reused = self._reused_client = self._create_client()  # type: ignore[attr-defined]
        yield reused


class Channel(_Repaired, kombu_redis.Channel):
    pass


class SentinelChannel(_Repaired, kombu_redis.SentinelChannel):
    pass


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel


SCHEMES = {
    "redis": "workers.broker:Transport",
    "rediss": "workers.broker:Transport",
    "sentinel": "workers.broker:SentinelTransport",
}


def install() -> None:
    """kombu resolves the Redis URL schemes to these transports in this process: its table of
    aliases, rather than Celery's `broker_transport`, so a broker URL keeps its scheme where
    others read it (Celery's banner, Flower's broker view, which knows `redis` and `sentinel`)."""
    kombu.transport.TRANSPORT_ALIASES.update(SCHEMES)
    for scheme in SCHEMES:
        kombu.transport._transport_cache.pop(scheme, None)  # resolved before: resolve again
