"""`zxsync connect xero|zoho --connection NAME`: OAuth2 consent, then tokens into the token store.

The authorization-code flow (Authlib's OAuth2 client, `clients.oauth`): print (and open) the
consent URL, take the code from a one-shot callback server on 127.0.0.1 or from the redirected
URL pasted back, and exchange it. The new token set goes into the encrypted store for the
connection and clears any "reconnect" alert, so workers pick it up on their next call. Works
against the sandboxes, whose consent screens approve at once (`zxsync sandbox` prints the
settings).
"""

from __future__ import annotations

import hmac
import http.server
import threading
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

import httpx
import typer
from rich.console import Console

from clients.oauth import OAuthApp
from clients.tokens import TokenManager, TokenSet
from clients.xero import xero_oauth
from clients.zoho import zoho_oauth
from workers.context import http_client, token_cipher
from workers.redis import get_redis
from workers.settings import Settings, get_settings

app = typer.Typer(help="Connect a Xero organisation or a Zoho org and store its tokens.")
console = Console()

# notifications: the channel `zxsync zoho watch` creates and beat renews (FACTS §7); fields.ALL:
# `zxsync setup zoho` reads and creates the write-back fields (FACTS §11)
ZOHO_SCOPES = "ZohoCRM.modules.ALL,ZohoCRM.settings.fields.ALL,ZohoCRM.notifications.ALL"
CALLBACK_TIMEOUT_SECONDS = 300.0


@dataclass(frozen=True)
class Provider:
    app: OAuthApp  # token endpoint and client authentication (clients.oauth)
    authorize_url: str
    scope: str
    extra: dict[str, str]

    @property
    def name(self) -> str:
        return self.app.provider

    @property
    def token_url(self) -> str:
        return self.app.token_url


def provider(name: str, settings: Settings) -> Provider:
    if name == "Xero":
        return Provider(
            xero_oauth(
                settings.xero_identity_url,
                settings.xero_client_id,
                settings.xero_client_secret.get_secret_value(),
            ),
            settings.xero_authorize_url,
            settings.xero_consent_scopes(),  # granular unless XERO_APP_SCOPES=broad
            {},
        )
    accounts = settings.zoho_accounts_url.rstrip("/")
    return Provider(
        zoho_oauth(
            accounts, settings.zoho_client_id, settings.zoho_client_secret.get_secret_value()
        ),
        f"{accounts}/oauth/v2/auth",
        ZOHO_SCOPES,
        {"access_type": "offline", "prompt": "consent"},
    )


def consent(
    p: Provider, redirect_uri: str, open_url: Callable[[str], Any], paste: bool = False
) -> TokenSet:
    """Run the consent and exchange the code; the redirected URL comes back by callback or paste."""
    client = p.app.client(http_client(), scope=p.scope, redirect_uri=redirect_uri)
    url, state = client.create_authorization_url(p.authorize_url, **p.extra)
    if paste:
        open_url(url)
        answer = typer.prompt("Paste the URL your browser was sent to").strip()
    else:
        answer = _await_callback(redirect_uri, lambda: open_url(url))
    token_url = checked_callback(p, answer, state)
    # the granted scope is kept with the tokens (clients.tokens)
    return p.app.exchange(http_client(), token_url, answer, state, redirect_uri)


# Zoho's accounts servers, one per data centre (FACTS §1): the only hosts the code and the
# client secret may be sent to, whatever a callback names
ZOHO_ACCOUNTS_SERVERS = frozenset(
    f"accounts.{domain}"
    for domain in (
        "zoho.com",
        "zoho.eu",
        "zoho.in",
        "zoho.com.au",
        "zoho.jp",
        "zohocloud.ca",
        "zoho.com.cn",
        "zoho.sa",
    )
)


def checked_callback(p: Provider, answer: str, state: str) -> str:
    """The token URL to exchange this callback's code at, once the callback is ours: its
    `state` is the one this consent sent (else a forged or stale callback, refused before any
    request), and Zoho's `accounts-server` is one of Zoho's documented servers or the
    configured ZOHO_ACCOUNTS_URL (the sandbox's), never any host a crafted link names."""
    query = parse_qs(urlsplit(answer).query)
    if "error" in query:
        raise typer.BadParameter(f"{p.name} refused the consent: {query['error'][0]}")
    given = query.get("state", [""])[0]
    if not hmac.compare_digest(given.encode(), state.encode()):
        raise typer.BadParameter(
            "the callback's state does not match this consent (a forged or stale link): "
            "nothing was sent; run the command again and use the link it prints"
        )
    server = query.get("accounts-server", [None])[0]
    if server is None or p.name != "Zoho":
        return p.token_url
    parts = urlsplit(server.rstrip("/"))
    configured = urlsplit(p.token_url)
    official = (
        parts.scheme == "https"
        and parts.hostname in ZOHO_ACCOUNTS_SERVERS
        and parts.port is None
        and not parts.username
        and not parts.path
    )
    if not official and (parts.scheme, parts.netloc) != (configured.scheme, configured.netloc):
        raise typer.BadParameter(
            f"the callback names accounts-server {server!r}, which is not a Zoho accounts "
            "server (accounts.zoho.com, .eu, .in, .com.au, .jp, .com.cn, .sa, "
            "accounts.zohocloud.ca) nor ZOHO_ACCOUNTS_URL: nothing was sent"
        )
    return f"{parts.scheme}://{parts.netloc}/oauth/v2/token"


def _await_callback(redirect_uri: str, open_consent: Callable[[], Any]) -> str:
    """Serve one GET on the redirect URI's 127.0.0.1 port and return the full redirected URL."""
    parts = urlsplit(redirect_uri)
    received: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            received.append(f"{parts.scheme}://{parts.netloc}{self.path}")
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.end_headers()
            self.wfile.write(b"zxsync: consent received, you can close this window.\n")

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the terminal shows our own messages only."""

    server = http.server.HTTPServer((parts.hostname or "127.0.0.1", parts.port or 80), Handler)
    server.timeout = CALLBACK_TIMEOUT_SECONDS
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    try:
        open_consent()
        thread.join(CALLBACK_TIMEOUT_SECONDS)
    finally:
        server.server_close()
    if not received:
        raise typer.BadParameter("no consent arrived on the callback; try --paste")
    return received[0]


def connect(
    name: str,
    connection: str,
    redirect_uri: str,
    open_url: Callable[[str], Any],
    paste: bool = False,
) -> TokenSet:
    """Consent for one connection and store its tokens; Xero: check the tenant is connected."""
    settings = get_settings()
    conn = settings.connection(connection)
    p = provider(name, settings)
    tokens = consent(p, redirect_uri, open_url, paste)
    if name == "Xero":
        _check_tenant(settings, tokens, conn.xero_tenant_id)
    refresh = p.app.refresher(http_client())
    TokenManager(get_redis(), name, conn.name, refresh, None, cipher=token_cipher()).store(tokens)
    return tokens


def _check_tenant(settings: Settings, tokens: TokenSet, tenant_id: str) -> None:
    """GET /connections (api.xero.com, beside the Accounting API): is our tenant among them?"""
    base = settings.xero_api_url.rstrip("/").removesuffix("/api.xro/2.0")
    answer = httpx.get(
        f"{base}/connections", headers={"Authorization": f"Bearer {tokens.access_token}"}
    )
    answer.raise_for_status()
    tenants = {t["tenantId"]: t.get("tenantName", "") for t in answer.json()}
    if tenant_id not in tenants:
        names = ", ".join(f"{n} ({i})" for i, n in tenants.items()) or "none"
        raise typer.BadParameter(
            f"the consent connected {names}, not the connection's tenant {tenant_id}: "
            "choose that organisation on Xero's consent screen"
        )


ConnectionOpt = Annotated[str, typer.Option("--connection", "-c", help="Connection name.")]
RedirectOpt = Annotated[
    str, typer.Option(help="Registered redirect URI; a 127.0.0.1 one is served here.")
]
PasteOpt = Annotated[
    bool, typer.Option(help="Paste the redirected URL instead of running the local callback.")
]
BrowserOpt = Annotated[bool, typer.Option(help="Open the consent URL in a browser.")]


def _opener(browser: bool) -> Callable[[str], None]:
    def open_url(url: str) -> None:
        console.print(f"Open this URL and approve access:\n{url}", soft_wrap=True)
        if browser:
            webbrowser.open(url)

    return open_url


@app.command()
def xero(
    connection: ConnectionOpt,
    redirect_uri: RedirectOpt = "http://127.0.0.1:8765/callback",
    paste: PasteOpt = False,
    browser: BrowserOpt = True,
) -> None:
    """Connect the connection's Xero organisation (scopes include offline_access)."""
    connect("Xero", connection, redirect_uri, _opener(browser), paste)
    console.print(f"[green]Xero connected[/green] for '{connection}'; tokens stored (encrypted).")


@app.command()
def zoho(
    connection: ConnectionOpt,
    redirect_uri: RedirectOpt = "http://127.0.0.1:8765/callback",
    paste: PasteOpt = False,
    browser: BrowserOpt = True,
) -> None:
    """Connect the connection's Zoho CRM org (offline access, in your data centre)."""
    connect("Zoho", connection, redirect_uri, _opener(browser), paste)
    console.print(f"[green]Zoho connected[/green] for '{connection}'; tokens stored (encrypted).")
