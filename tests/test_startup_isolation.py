"""Worker start-up isolated per connection: one broken connection is a warning, an exception
report and a hint for it alone; the worker starts and serves the others (issue 21)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.server import ThreadedServer, free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def alerts(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """A Slack-compatible receiver for exception reports."""
    received: list[dict[str, Any]] = []

    async def hook(request: Request) -> Response:
        received.append(json.loads(await request.body()))
        return Response(status_code=200)

    server = ThreadedServer(Starlette(routes=[Route("/hook", hook, methods=["POST"])])).start()
    monkeypatch.setenv("ZXS_ALERT_WEBHOOK_URL", f"{server.url}/hook")
    yield received
    server.stop()


def run_worker(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[list[str]]]:
    """`zxsync worker` up to the point where Celery would take over (recorded, not run)."""
    from typer.testing import CliRunner

    from workers.app import app as celery_app
    from workers.settings import get_settings
    from zxsync.cli import app

    get_settings.cache_clear()
    started: list[list[str]] = []
    monkeypatch.setattr(celery_app, "worker_main", started.append)
    return CliRunner().invoke(app, ["worker"]), started


def test_a_404_a_5xx_and_a_revoked_token_stop_only_their_own_connection(
    make_stack: Callable[..., Any],
    alerts: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before: the first of these ended `zxsync worker` with a traceback, for every tenant."""
    from clients.tokens import TokenManager, TokenSet
    from workers.context import token_cipher
    from workers.redis import get_redis

    stack = make_stack(tenants=4)
    ok, missing, failing, revoked = stack.connections
    stack.xero.outage(missing.xero_tenant_id, 404)
    stack.xero.outage(failing.xero_tenant_id, 503)

    def never(_: str) -> TokenSet:
        raise AssertionError

    TokenManager(get_redis(), "Xero", revoked.name, never, None, cipher=token_cipher()).store(
        TokenSet("", "a-refresh-token-xero-no-longer-knows", 0.0)
    )
    result, started = run_worker(monkeypatch)
    out = " ".join(result.output.split())
    assert result.exception is None, result.output
    assert started, "the worker started for the healthy connection"
    assert f"{ok.name}: fits its Xero organisation" in out
    for conn in (missing, failing, revoked):
        assert f"{conn.name}: could not be checked" in out, out
    assert f"`zxsync connect xero --connection {revoked.name}`" in out
    assert "HTTP 404" in out and "HTTP 503" in out
    reported = {b["text"].split("(connection ")[1].split(")")[0] for b in alerts}
    assert reported == {missing.name, failing.name, revoked.name}


def test_an_unreachable_token_endpoint_is_a_warning_not_a_traceback(
    make_stack: Callable[..., Any],
    alerts: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stack = make_stack(tenants=2)
    monkeypatch.setenv("XERO_IDENTITY_URL", f"http://127.0.0.1:{free_port()}")
    result, started = run_worker(monkeypatch)
    assert result.exception is None, result.output
    assert started
    out = " ".join(result.output.split())
    for conn in stack.connections:
        assert f"{conn.name}: could not be checked" in out
    assert "XERO_IDENTITY_URL" in out
    assert len(alerts) == 2
