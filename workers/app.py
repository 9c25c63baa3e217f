"""The Celery app: broker, at-least-once delivery settings, one queue per stage.

Delivery is at-least-once (late acks, reject on worker lost, prefetch 1) and every stage is
idempotent, which together make the pipeline effectively exactly-once (a task whose process
dies is redelivered rather than acked; one reserved task per process needs late acks and
prefetch 1 together: celery #9279). The visibility timeout stays above the longest countdown
the retry policy can ask for, so Redis never redelivers a task that is merely waiting.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import parse_qs, urlsplit

import structlog
from celery import Celery, signals
from celery.schedules import crontab
from kombu import Exchange, Queue

from workers import broker, catalog, keys
from workers.logs import configure_logging
from workers.redis import resolve_redis_url
from workers.settings import Settings, get_settings

STAGE_QUEUES = catalog.routes()  # every task's queue (workers/catalog.py)
QUEUE_ORDER = catalog.queue_order()  # served first to last: workers/catalog.py says why
PRIORITY_STEPS = [0, 3, 6, 9]  # kombu's Redis steps: 0 is served first
TASK_MODULES = catalog.task_modules()

SWEEP_BATCHES_SECONDS = 5.0


def create_app() -> Celery:
    """The app with static settings; the broker is resolved when Celery first needs it."""
    settings = get_settings()
    # every task runs the same policies: retries, deferral, poison, dead letters, history, time
    # limits (workers/policies)
    app = Celery("zxsync", include=TASK_MODULES, task_cls="workers.policies:PolicyTask")
    broker.install()  # kombu's Redis transports, repaired so a worker outlives a failover
    app.on_configure.connect(_resolve_broker, weak=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=catalog.DEFAULT_QUEUE,
        # each queue its own direct exchange and key: with Celery's default (one exchange, one
        # key) every queue would be bound to the same key and receive every task
        task_queues=[
            Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUE_ORDER
        ],
        task_routes={name: {"queue": queue} for name, queue in STAGE_QUEUES.items()},
        broker_transport_options=broker_transport_options(settings),
        task_default_priority=0,
        broker_connection_retry_on_startup=True,
        # a stage hands its result to the next by publishing; ride out a Redis restart rather
        # than fail (and ack) a finished stage whose next step could not be sent
        task_publish_retry_policy={
            "max_retries": 30,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 2,
        },
        worker_hijack_root_logger=False,
        # task events only while a monitor asks for them: Flower sends `enable_events` every few
        # seconds while it runs; unwatched they cost three Redis publishes per task (issue #19)
        worker_send_task_events=False,
        worker_consumer="workers.poison:DeadLetteringConsumer",
        # no task-sent event: a second Redis publish at every stage hop, for a "sent" state in
        # Flower that the queue lengths show better (issue #19)
        task_send_sent_event=False,
        beat_schedule={
            "redrive-stalled": {  # jobs a broker hiccup dropped are sent again
                "task": "zxsync.redrive_stalled",
                "schedule": 60.0,
            },
            "dead-letter-digest": {
                "task": "zxsync.dlq_digest",
                "schedule": crontab(hour=settings.zxs_digest_hour_utc, minute=0),
            },
            # safety-net polls: beat only looks for the connections whose poll is due, each
            # backing off while it finds nothing (workers/polling.py)
            "po-status-poll": {  # purchase order statuses back to Zoho (no Xero webhook)
                "task": "zxsync.po_status_poll",
                "schedule": settings.zxs_poll_tick_seconds,
            },
            "payment-reconcile": {  # catches Xero webhooks that never arrived
                "task": "zxsync.payment_reconcile",
                "schedule": settings.zxs_poll_tick_seconds,
            },
            "zoho-channel-renew": {  # channels renewed at half their life (tasks/zoho_channels)
                "task": "zxsync.zoho_channel_renew",
                "schedule": settings.zxs_zoho_channel_check_seconds,
            },
            "zoho-sweep": {  # Zoho changes whose notification never came (tasks/zoho_sweep)
                "task": "zxsync.zoho_sweep",
                "schedule": settings.zxs_zoho_sweep_seconds,
            },
            "sweep-batches": {  # a batch whose flush trigger died with its worker
                "task": "zxsync.sweep_batches",
                "schedule": SWEEP_BATCHES_SECONDS,
            },
            "release-deferred": {  # jobs parked until Xero's next daily window
                "task": "zxsync.release_deferred",
                "schedule": settings.zxs_defer_poll_seconds,
            },
        },
    )
    return app


def _resolve_broker(sender: Celery, **_: object) -> None:
    """Deferred so importing the app never starts an embedded Redis by itself."""
    use_broker(sender, resolve_redis_url(get_settings()))


def use_broker(app: Celery, url: str) -> None:
    """The app's broker is `url`, with TLS options for a `rediss://` URL and the transport
    options of the settings now (a namespace set since the app was made applies to the queues)."""
    app.conf.broker_url = url
    app.conf.broker_transport_options = broker_transport_options(get_settings())
    ssl_options = broker_ssl_options(url)
    if ssl_options is not None:
        app.conf.broker_use_ssl = ssl_options


def broker_transport_options(settings: Settings) -> dict[str, Any]:
    """kombu's Redis transport options for these settings."""
    return {
        "visibility_timeout": settings.zxs_visibility_timeout
        or int(settings.zxs_retry_backoff_max * 3 + 600),
        "queue_order_strategy": "priority",  # QUEUE_ORDER, first non-empty queue first
        "priority_steps": PRIORITY_STEPS,  # per tenant: workers/pipeline.py
        "master_name": settings.zxs_redis_sentinel_master,  # a sentinel:// broker only
        # the deployment's namespace on kombu's keys too (workers/keys.py)
        **({"global_keyprefix": keys.broker_prefix()} if keys.broker_prefix() else {}),
        # a dead worker's messages come back once the visibility timeout passed: kombu looks
        # every 10 s but by default scans (one ZRANGE) only every 10th time, which added up
        # to 100 s when a host died (tests/test_hosts.py)
        "unacked_restore_interval": 10,
        "unacked_restore_throttle": 1,
    }


def broker_ssl_options(url: str) -> dict[str, Any] | None:
    """Celery's `broker_use_ssl` for a TLS Redis URL (`rediss://`): kombu refuses a rediss
    broker without it unless the URL says `ssl_cert_reqs=...` itself (then the URL decides).
    The default verifies the server's certificate, as redis-py does for the same URL."""
    parts = urlsplit(url)
    if parts.scheme != "rediss" or "ssl_cert_reqs" in parse_qs(parts.query):
        return None
    return {"ssl_cert_reqs": ssl.CERT_REQUIRED}


@signals.worker_init.connect(weak=False)
def _open_database(**_: object) -> None:
    """The worker's main process opens the system of record (its schema brought up to date)
    before it forks the pool: each pool process starts with it open instead of paying Alembic's
    import and migration check at its first task, 1-2 CPU seconds each (issue #19). A database
    that cannot be opened now is opened at the first task, as before."""
    from sqlalchemy.exc import SQLAlchemyError

    from workers.store import get_database

    try:
        get_database()
    except (SQLAlchemyError, OSError) as exc:
        structlog.get_logger("zxsync.store").warning("store.open_at_first_task", error=str(exc))


@signals.worker_process_init.connect(weak=False)
def _configure_worker_process(**_: object) -> None:
    """Per pool process: logs and Sentry (after the fork, as sentry-sdk requires)."""
    from workers.alerts import init_sentry

    settings = get_settings()
    configure_logging(settings.zxs_log_level, settings.zxs_log_json)
    init_sentry(settings)


app = create_app()
