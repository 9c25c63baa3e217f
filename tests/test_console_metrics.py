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
    client: redis.Redis,  # noqa: F811
    names: list[str],  # noqa: F811
) -> None:
    from zxsync.cli import app

    runner = CliRunner()
    healthy = runner.invoke(app, ["connections"], env={"COLUMNS": "200"})
    assert healthy.exit_code == 0, healthy.output
    assert names[0] in healthy.output and "healthy" in healthy.output
    dead_letter(client, names[1], "101")
    unhealthy = runner.invoke(app, ["connections"], env={"COLUMNS": "200"})
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
