"""/metrics (console/metrics.py), the deploy/ examples that read it, and `zxsync connections`."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from test_console import client, dead_letter, names, settings  # noqa: F401
from typer.testing import CliRunner

from console.metrics import create_metrics_app, render
from workers import activity, admission, keys
from workers.settings import Settings

DEPLOY = Path(__file__).parent.parent / "deploy"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_report_each_connection_and_beats_heartbeat(
    client: redis.Redis,  # noqa: F811
    settings: Settings,  # noqa: F811
    names: list[str],  # noqa: F811
) -> None:
    a, b = names
    dead_letter(client, a, "101")
    admission.pause(client, a, "olga")
    client.set(activity.rate_limited_key(b), 3)
    activity.record_heartbeat(client)
    with TestClient(create_metrics_app(client, settings)) as web:
        answer = web.get("/metrics")
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    got = samples(answer.text)
    ca, cb = (("connection", a),), (("connection", b),)
    assert got[("zxsync_connection_health", ca)] == 2
    assert got[("zxsync_connection_health", cb)] == 0
    assert got[("zxsync_dead_letters_open", (("connection", a), ("kind", "invalid_record")))] == 1
    assert got[("zxsync_connection_paused", ca)] == 1
    assert got[("zxsync_connection_paused", cb)] == 0
    assert got[("zxsync_xero_rate_limited_total", cb)] == 3
    assert got[("zxsync_xero_calls_remaining_today", ca)] == 1000  # the Starter tier (default)
    assert got[("zxsync_xero_minute_headroom", ca)] == 60
    assert got[("zxsync_jobs_waiting", ca)] == 0
    assert got[("zxsync_oldest_waiting_job_seconds", ca)] == 0
    assert abs(got[("zxsync_beat_last_heartbeat_timestamp_seconds", ())] - time.time()) < 60
    assert "secret" not in answer.text


def test_the_alert_rules_and_the_dashboard_use_only_exported_metrics(
    client: redis.Redis,  # noqa: F811
    settings: Settings,  # noqa: F811
) -> None:
    exported = {
        s.name
        for f in text_string_to_metric_families(render(client, settings).decode())
        for s in f.samples
    } | {"zxsync_dead_letters_open", "zxsync_last_sync_timestamp_seconds"}
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dashboard = json.loads((DEPLOY / "grafana" / "zxsync-dashboard.json").read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {name for e in exprs for name in re.findall(r"\bzxsync_[a-z_]+", e)}
    assert used and used <= exported, used - exported
    assert len(rules["groups"][0]["rules"]) >= 6


@pytest.fixture
def cli_env(
    monkeypatch: pytest.MonkeyPatch,
    settings: Settings,  # noqa: F811
    redis_url: str,
) -> Iterator[None]:
    from workers.redis import get_redis
    from workers.settings import get_settings

    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("ZXS_CONNECTIONS", settings.zxs_connections)
    monkeypatch.setenv("ZXS_TOKEN_KEY", settings.zxs_token_key.get_secret_value())
    get_settings.cache_clear()
    get_redis.cache_clear()
    yield
    get_settings.cache_clear()
    get_redis.cache_clear()


def test_zxsync_connections_prints_the_table_and_fails_when_one_is_unhealthy(
    cli_env: None,
    wide_output: None,
    client: redis.Redis,  # noqa: F811
    names: list[str],  # noqa: F811
) -> None:
    from zxsync.cli import app

    runner = CliRunner()
    healthy = runner.invoke(app, ["connections"])
    assert healthy.exit_code == 0, healthy.output
    assert names[0] in healthy.output and "healthy" in healthy.output
    dead_letter(client, names[1], "101")
    unhealthy = runner.invoke(app, ["connections"])
    assert unhealthy.exit_code == 1
    assert "unhealthy" in unhealthy.output and "1 dead letter(s)" in unhealthy.output


def test_zxsync_console_refuses_to_start_without_credentials(cli_env: None) -> None:
    from console.settings import get_console_settings
    from zxsync.cli import app

    get_console_settings.cache_clear()
    result = CliRunner().invoke(
        app, ["console"], env={"ZXS_CONSOLE_USERS": "", "ZXS_CONSOLE_SECRET": ""}
    )
    get_console_settings.cache_clear()
    assert result.exit_code == 2 and "no users configured" in result.output


def test_beats_once_a_minute_task_writes_the_heartbeat(
    cli_env: None,
    client: redis.Redis,  # noqa: F811
) -> None:
    from workers.redrive import redrive_stalled

    client.delete(keys.BEAT_HEARTBEAT())
    assert activity.beat_heartbeat(client) is None
    assert redrive_stalled.run() == 0
    beat = activity.beat_heartbeat(client)
    assert beat is not None and abs(beat - time.time()) < 10


def test_queue_backlog_counts_every_priority_list_and_the_waiting_rooms(
    client: redis.Redis,  # noqa: F811
    settings: Settings,  # noqa: F811
    names: list[str],  # noqa: F811
    redis_url: str,
) -> None:
    """What KEDA scales the workers on (deploy/k8s): a burst sits at the lower priority steps,
    which kombu keeps in lists of their own, so one list's length would miss it; jobs held in
    a waiting room start at zxs.fetch. Messages are published the way the workers' app does."""
    from kombu import Connection, Exchange, Queue

    from workers.app import PRIORITY_STEPS, QUEUE_ORDER

    def backlog() -> dict[str, float]:
        got = samples(render(client, settings).decode())
        return {
            dict(labels)["queue"]: value
            for (name, labels), value in got.items()
            if name == "zxsync_queue_backlog"
        }

    before = backlog()
    assert set(before) == set(QUEUE_ORDER)
    marker = f"backlog-{names[0]}"
    options = {"priority_steps": PRIORITY_STEPS, "queue_order_strategy": "priority"}
    sent = {"zxs.fetch": PRIORITY_STEPS, "zxs.invoices": [0, 9, 9], "zxs.payments": [6]}
    with Connection(redis_url, transport_options=options) as broker:
        producer = broker.Producer()
        for name, priorities in sent.items():
            queue = Queue(name, Exchange(name, type="direct"), routing_key=name)
            for priority in priorities:
                producer.publish(
                    {},
                    exchange=queue.exchange,
                    routing_key=name,
                    priority=priority,
                    declare=[queue],
                    headers={"marker": marker},
                )
    a, b = names
    entry = json.dumps({"key": "k", "message": {}, "queued_at": time.time()})
    client.rpush(admission.waiting_key(a), entry, entry)
    client.rpush(admission.waiting_key(b), entry)
    try:
        after = backlog()
    finally:  # the session's Redis is shared with later tests' workers: take ours back out
        for key in client.keys("zxs.*"):
            if client.type(key) == "list":
                for raw in client.lrange(key, 0, -1):
                    text = raw if isinstance(raw, str) else raw.decode()
                    if marker in text:
                        client.lrem(key, 0, text)
    grown = {queue: after[queue] - before[queue] for queue in QUEUE_ORDER}
    assert grown == {
        **dict.fromkeys(QUEUE_ORDER, 0),
        "zxs.fetch": len(PRIORITY_STEPS) + 3,
        "zxs.invoices": 3,
        "zxs.payments": 1,
    }
