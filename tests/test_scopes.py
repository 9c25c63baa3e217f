"""Granular Xero scopes (apps created from 2 March 2026): what we ask, store and check."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from sandbox.server import free_port
from schemas.scopes import FEATURES, XERO_SCOPES, missing_scopes


def test_the_granular_set_is_minimal_and_covers_every_feature() -> None:
    granular = set(XERO_SCOPES["granular"].split())
    assert "accounting.transactions" not in granular
    assert granular == {
        "offline_access",
        "accounting.invoices",
        "accounting.payments.read",
        "accounting.contacts",
        "accounting.settings.read",
    }
    assert missing_scopes(frozenset(granular)) == []
    assert missing_scopes(frozenset(XERO_SCOPES["broad"].split())) == []
    for scope in granular:  # nothing asked for that no feature needs
        assert missing_scopes(frozenset(granular - {scope})), scope


def test_missing_scopes_are_named_per_feature() -> None:
    missing = missing_scopes(frozenset({"offline_access", "accounting.contacts"}))
    features = {feature for feature, _ in missing}
    assert "invoices and purchase orders" in features
    assert "contacts" not in features
    assert dict(missing)["settings check (accounts, tax rates, tracking)"] == (
        "accounting.settings.read"
    )
    assert {f.name for f in FEATURES} >= features


def browser(url: str) -> None:
    httpx.get(url, follow_redirects=True, timeout=10).raise_for_status()


@pytest.mark.integration
def test_connect_asks_for_granular_scopes_and_stores_what_xero_granted(
    make_stack: Callable[..., Any],
) -> None:
    """A granular app refuses accounting.transactions: today's consent failed outright."""
    from clients.tokens import granted_scopes
    from zxsync.connect import connect

    stack = make_stack()
    conn = stack.connections[0]
    connect("Xero", conn.name, f"http://127.0.0.1:{free_port()}/callback", browser)
    assert granted_scopes(conn.name) == frozenset(XERO_SCOPES["granular"].split())


@pytest.mark.integration
def test_check_names_what_each_feature_misses_and_the_command(
    make_stack: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection consented without invoices/settings: check names each feature's scope and
    the reconnect command, and a refused call is a MissingScope, not a token refresh."""
    from typer.testing import CliRunner

    from schemas.errors import MissingScope
    from workers.context import build_context
    from workers.settings import get_settings
    from zxsync.cli import app
    from zxsync.connect import connect

    stack = make_stack()
    conn = stack.connections[0]
    monkeypatch.setenv("XERO_SCOPES", "offline_access accounting.contacts")
    get_settings.cache_clear()
    connect("Xero", conn.name, f"http://127.0.0.1:{free_port()}/callback", browser)
    monkeypatch.delenv("XERO_SCOPES")
    get_settings.cache_clear()
    refreshes = stack.xero.stats()["token_refreshes"]
    with pytest.raises(MissingScope, match="insufficient_scope"):
        build_context(conn.name).xero.accounts()
    assert stack.xero.stats()["token_refreshes"] == refreshes, "a scope 401 is no expired token"

    result = CliRunner().invoke(app, ["check"])
    assert result.exit_code == 1, result.output
    out = " ".join(result.output.split())
    assert "invoices and purchase orders: needs accounting.invoices" in out
    assert "settings check (accounts, tax rates, tracking): needs accounting.settings.read" in out
    assert f"zxsync connect xero --connection {conn.name}" in out


def test_tokens_stored_before_scopes_were_recorded_are_read_from_their_jwt() -> None:
    """Xero's access tokens are JWTs with a `scope` claim: a connection made by an older
    zxsync still shows what it was granted (here the broad set, to be migrated)."""
    import base64
    import json

    from clients.tokens import TokenSet

    claims = (
        base64.urlsafe_b64encode(
            json.dumps({"scope": ["offline_access", "accounting.transactions"]}).encode()
        )
        .decode()
        .rstrip("=")
    )
    old = TokenSet(f"e30.{claims}.sig", "refresh", 0.0)
    assert old.scopes() == frozenset({"offline_access", "accounting.transactions"})
    assert dict(missing_scopes(old.scopes() or frozenset()))["contacts"] == "accounting.contacts"
    assert TokenSet("opaque", "refresh", 0.0).scopes() is None
    assert TokenSet("x", "r", 0.0, scope="a b").scopes() == frozenset({"a", "b"})
