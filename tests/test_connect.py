"""`zxsync connect`: the authorization-code flow against the sandboxes, tokens into the store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from sandbox.server import free_port

pytestmark = pytest.mark.integration


def browser(url: str) -> None:
    """The user's browser: the sandbox consent approves and redirects to our callback."""
    httpx.get(url, follow_redirects=True, timeout=10).raise_for_status()


@pytest.mark.parametrize("provider", ["Xero", "Zoho"])
def test_consent_stores_tokens_that_workers_then_use(
    make_stack: Callable[..., Any], provider: str
) -> None:
    from workers.context import build_context
    from zxsync.connect import connect

    stack = make_stack()
    conn = stack.connections[0]
    redirect = f"http://127.0.0.1:{free_port()}/callback"
    before = stack.xero.stats()["token_refreshes"]
    tokens = connect(provider, conn.name, redirect, browser)
    bootstraps = (f"xero-refresh-{conn.name}", f"1000.zoho-refresh-{conn.name}")
    assert tokens.refresh_token not in bootstraps
    ctx = build_context(conn.name)
    if provider == "Xero":
        assert ctx.xero.tax_rates(), "the stored access token works"
        assert stack.xero.stats()["token_refreshes"] == before, "no refresh was needed"
    else:
        assert ctx.zoho.get_records("Products", [], []) == []
        assert ctx.zoho._tokens.current().access_token == tokens.access_token


def test_a_consent_for_another_organisation_is_refused(
    make_stack: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers.settings import get_settings
    from zxsync.connect import connect

    stack = make_stack()
    other = "0f7e57ab-0000-4000-8000-000000000001"  # tenant ids are UUIDs, as Xero's
    stack.xero.add_tenant(other, "Someone else", "AU", "AUD")
    stack.xero.add_client("other-app", "other-secret", "unused-refresh", [other])
    monkeypatch.setenv("XERO_CLIENT_ID", "other-app")
    monkeypatch.setenv("XERO_CLIENT_SECRET", "other-secret")
    get_settings.cache_clear()
    try:
        with pytest.raises(Exception, match="not the connection's tenant"):
            connect(
                "Xero", stack.connections[0].name, f"http://127.0.0.1:{free_port()}/cb", browser
            )
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
