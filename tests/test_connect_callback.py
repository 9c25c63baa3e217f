"""Connect safely (issue #14.4): a callback is used only if its OAuth `state` is this consent's,
and Zoho's `accounts-server` only if it is one of Zoho's documented accounts servers (FACTS §1)
or the configured ZOHO_ACCOUNTS_URL; otherwise nothing, least of all the client secret, is sent.
"""

from __future__ import annotations

from typing import Any

import pytest
import typer

from workers.settings import Settings
from zxsync.connect import checked_callback, consent, provider

SETTINGS = Settings(
    _env_file=None,
    zoho_client_id="id",
    zoho_client_secret="zoho-secret",
    xero_client_id="xid",
    xero_client_secret="xero-secret",
)
ZOHO = provider("Zoho", SETTINGS)
XERO = provider("Xero", SETTINGS)
CALLBACK = "http://127.0.0.1:8765/callback?code=1000.abc&location=eu"


@pytest.mark.parametrize(
    "server",
    [
        "https://accounts.zoho.eu",
        "https://accounts.zoho.com.au/",
        "https://accounts.zohocloud.ca",
        "https://accounts.zoho.com",
    ],
)
def test_zohos_accounts_servers_are_accepted(server: str) -> None:
    url = checked_callback(ZOHO, f"{CALLBACK}&state=s1&accounts-server={server}", "s1")
    assert url == f"{server.rstrip('/')}/oauth/v2/token"


@pytest.mark.parametrize(
    "server",
    [
        "https://evil.example",
        "http://accounts.zoho.eu",
        "https://accounts.zoho.eu.evil.example",
        "https://accounts.zoho.eu:8443",
        "https://user@accounts.zoho.eu",
        "https://accounts.zoho.eu/../x",
        "https://zoho.eu",
    ],
)
def test_any_other_accounts_server_is_refused(server: str) -> None:
    with pytest.raises(typer.BadParameter, match="not a Zoho accounts server"):
        checked_callback(ZOHO, f"{CALLBACK}&state=s1&accounts-server={server}", "s1")


@pytest.mark.parametrize("state", ["", "&state=other", "&state="])
def test_a_missing_or_wrong_state_is_refused(state: str) -> None:
    for p in (ZOHO, XERO):
        with pytest.raises(typer.BadParameter, match="state does not match"):
            checked_callback(p, CALLBACK + state, "s1")


def test_xero_ignores_an_accounts_server_and_errors_are_reported() -> None:
    answer = f"{CALLBACK}&state=s1&accounts-server=https://accounts.zoho.eu"
    assert checked_callback(XERO, answer, "s1") == XERO.token_url
    with pytest.raises(typer.BadParameter, match="access_denied"):
        checked_callback(XERO, "http://127.0.0.1/cb?error=access_denied&state=s1", "s1")


@pytest.mark.parametrize(
    "crafted",
    ["{cb}&state={state}&accounts-server=https://evil.example", "{cb}&state=forged"],
)
def test_a_crafted_callback_sends_nothing(monkeypatch: pytest.MonkeyPatch, crafted: str) -> None:
    """The whole consent with a pasted, crafted callback: the code exchange never starts."""
    sent: list[Any] = []
    seen: list[str] = []
    monkeypatch.setattr("clients.oauth.OAuthApp.exchange", lambda *a, **k: sent.append((a, k)))

    def prompt(*_: Any, **__: Any) -> str:
        state = seen[0].split("state=")[1].split("&")[0]
        return crafted.format(cb=CALLBACK, state=state)

    monkeypatch.setattr(typer, "prompt", prompt)
    with pytest.raises(typer.BadParameter):
        consent(ZOHO, "http://127.0.0.1:8765/callback", seen.append, paste=True)
    assert seen and sent == []
