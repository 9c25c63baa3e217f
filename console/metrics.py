"""/metrics: the connections' health in Prometheus' text format, read from Redis at each scrape
(a custom collector, so every console replica and every scrape reports the same shared state).

Served on its own port (ZXS_CONSOLE_METRICS_PORT), meant to be reachable by Prometheus only;
it shows counts and names, nothing secret. deploy/ has a Grafana dashboard and alert rules.
"""

from __future__ import annotations

from collections.abc import Iterator

import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from console.health import LEVEL_ORDER, read_health
from workers import activity
from workers.backlog import queue_backlog
from workers.settings import Settings

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class HealthCollector(Collector):
    def __init__(self, redis_client: redis.Redis, settings: Settings) -> None:
        self._redis = redis_client
        self._settings = settings

    def collect(self) -> Iterator[Metric]:
        healths = read_health(self._redis, self._settings, hours=0)
        conn = ["connection"]
        level = GaugeMetricFamily(
            "zxsync_connection_health", "0 healthy, 1 needs attention, 2 unhealthy", labels=conn
        )
        letters = GaugeMetricFamily(
            "zxsync_dead_letters_open", "Open dead letters", labels=["connection", "kind"]
        )
        lag = GaugeMetricFamily(
            "zxsync_oldest_waiting_job_seconds",
            "Age of the oldest job in the waiting room (sync lag); 0 when none waits",
            labels=conn,
        )
        calls = GaugeMetricFamily(
            "zxsync_xero_calls_today", "Xero calls counted in the current day window", labels=conn
        )
        remaining = GaugeMetricFamily(
            "zxsync_xero_calls_remaining_today", "Xero calls left today", labels=conn
        )
        headroom = GaugeMetricFamily(
            "zxsync_xero_minute_headroom", "Xero calls left this minute", labels=conn
        )
        limited = CounterMetricFamily(
            "zxsync_xero_rate_limited", "Xero 429 answers received", labels=conn
        )
        waiting = GaugeMetricFamily(
            "zxsync_jobs_waiting", "Jobs in the waiting room (admission)", labels=conn
        )
        in_flight = GaugeMetricFamily(
            "zxsync_jobs_in_flight", "Jobs accepted and not finished", labels=conn
        )
        paused = GaugeMetricFamily("zxsync_connection_paused", "1 when paused", labels=conn)
        reconnect = GaugeMetricFamily(
            "zxsync_token_reconnect_needed",
            "1 when the provider's tokens need a reconnect or keep failing to refresh",
            labels=["connection", "provider"],
        )
        last_sync = GaugeMetricFamily(
            "zxsync_last_sync_timestamp_seconds", "When a document last synced", labels=conn
        )
        for h in healths:
            level.add_metric([h.name], LEVEL_ORDER[h.level])
            for kind, count in sorted(h.dead_letters.items()):
                letters.add_metric([h.name, kind], count)
            lag.add_metric([h.name], h.oldest_waiting_seconds or 0.0)
            calls.add_metric([h.name], h.xero.calls_today)
            remaining.add_metric([h.name], h.xero.remaining_today)
            headroom.add_metric([h.name], h.xero.minute_headroom)
            limited.add_metric([h.name], h.xero_rate_limited)
            waiting.add_metric([h.name], h.waiting)
            in_flight.add_metric([h.name], h.in_flight)
            paused.add_metric([h.name], 1 if h.paused else 0)
            for t in h.tokens:
                bad = t.state in {"reconnect needed", "refresh failing"}
                reconnect.add_metric([h.name, t.provider], 1 if bad else 0)
            if h.last_sync:
                last_sync.add_metric([h.name], h.last_sync.timestamp())
        yield from (level, letters, lag, calls, remaining, headroom, limited, waiting)
        yield from (in_flight, paused, reconnect, last_sync)
        heartbeat = GaugeMetricFamily(
            "zxsync_beat_last_heartbeat_timestamp_seconds",
            "When beat's once-a-minute task last ran (0: never)",
        )
        heartbeat.add_metric([], activity.beat_heartbeat(self._redis) or 0.0)
        yield heartbeat
        backlog = GaugeMetricFamily(
            "zxsync_queue_backlog",
            "Messages waiting in the queue, every priority list (zxs.fetch: and the jobs in the "
            "connections' waiting rooms); what KEDA scales the workers on",
            labels=["queue"],
        )
        connections = self._settings.connections()
        for queue, count in queue_backlog(self._redis, connections).items():
            backlog.add_metric([queue], count)
        yield backlog


def render(redis_client: redis.Redis, settings: Settings) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HealthCollector(redis_client, settings))
    return generate_latest(registry)


def create_metrics_app(redis_client: redis.Redis, settings: Settings) -> Starlette:
    async def metrics(request: Request) -> Response:
        return Response(render(redis_client, settings), media_type=CONTENT_TYPE)

    return Starlette(routes=[Route("/metrics", metrics, methods=["GET"])])
