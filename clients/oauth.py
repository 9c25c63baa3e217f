"""One OAuth2 token client for Xero and Zoho: the consent URL, the code exchange and the refresh.

Built on Authlib's transport-free `authlib.oauth2.client.OAuth2Client` (request bodies, client
authentication, state checks, keeping an unrotated refresh token) over our own `httpx.Client`.
Authlib 1.9's `authlib.integrations.httpx_client` is deprecated in favour of the separate
`httpx2` package, which nothing else here uses.

The two providers differ only in what an `OAuthApp` states: Xero authenticates the client with
HTTP Basic and rotates the refresh token on every refresh (the answer must carry a new one; the
previous one lives 30 minutes more, then `invalid_grant`); Zoho takes the id and secret in the
form body, keeps the refresh token (the answer carries none), names the `api_domain` to call, and
answers `{"error": "Access Denied"}` with HTTP 200 once a refresh token was used 10 times in 10
minutes: a wait, not a revocation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

import httpx
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.client import OAuth2Client

from clients.tokens import Refresh, TokenSet
from schemas.errors import ApiError, AuthRevoked, RateLimited, TransportError

# the form encoding both token endpoints document (no charset parameter: Zoho's examples have none)
TOKEN_HEADERS = {
    "Accept": "application/json",
    "Content-Type": "application/x-www-form-urlencoded",
}


@dataclass(frozen=True)
class OAuthApp:
    """One provider's registered app and the rules of its token endpoint."""

    provider: str
    token_url: str
    client_id: str
    client_secret: str
    auth_method: Literal["client_secret_basic", "client_secret_post"]
    rotates: bool  # every refresh answer carries a new refresh token, the old one dies
    classify: Callable[[httpx.Response], ApiError]  # the provider's error classification
    # OAuth `error` codes that mean the grant is gone for good (None: every code the provider
    # answers outside a 429 or 5xx)
    revoked: frozenset[str] | None
    reconnect_hint: str
    endpoint_setting: str  # the setting naming the token endpoint, for "unreachable" messages
    blocked: Mapping[str, float] = field(default_factory=dict)  # error code -> wait (seconds)

    def client(
        self, http: httpx.Client, *, scope: str | None = None, redirect_uri: str | None = None
    ) -> OAuth2Client:
        """An Authlib client for one exchange (it keeps the last token: not shared)."""
        return _Client(self, http, scope=scope, redirect_uri=redirect_uri)

    def refresher(self, http: httpx.Client) -> Refresh:
        """A refresher for TokenManager: the refresh_token grant at the token endpoint."""

        def refresh(refresh_token: str) -> TokenSet:
            token = self.client(http).refresh_token(
                self.token_url, refresh_token=refresh_token, headers=dict(TOKEN_HEADERS)
            )
            return self.token_set(token)

        return refresh

    def exchange(
        self,
        http: httpx.Client,
        token_url: str,
        authorization_response: str,
        state: str,
        redirect_uri: str,
    ) -> TokenSet:
        """Exchange the code of a consent's redirected URL (its state already checked)."""
        client = self.client(http, redirect_uri=redirect_uri)
        token = client.fetch_token(
            token_url,
            authorization_response=authorization_response,
            state=state,
            headers=dict(TOKEN_HEADERS),
        )
        return self.token_set(token)

    def token_set(self, token: Mapping[str, Any]) -> TokenSet:
        """Our token set from a token answer (a refresh answer without a refresh token kept the
        one used: Authlib puts it back)."""
        if not token.get("refresh_token"):
            raise ApiError(
                self.provider,
                "the token answer carries no refresh token (was offline access granted?)",
            )
        return TokenSet.issued(
            token["access_token"],
            token["refresh_token"],
            float(token["expires_in"]),
            token.get("api_domain"),
            token.get("scope"),
        )

    def refused(self, error: str, response: httpx.Response) -> ApiError:
        """What an OAuth error answer means: a wait, a dead grant, or the provider's error (a
        429 or 5xx stays retryable: remembering it as revoked would demand a reconnect)."""
        if error in self.blocked:
            return RateLimited(self.provider, "token refreshes", self.blocked[error])
        if response.status_code == 429 or response.status_code >= 500:
            return self.classify(response)
        if self.revoked is None or error in self.revoked:
            return AuthRevoked(
                self.provider, f"token refresh refused: {error}", hint=self.reconnect_hint
            )
        return self.classify(response)


class _HttpxSession:
    """The session Authlib's base client posts through: Authlib's client authentication
    (Basic header or form fields) applied, then sent on our httpx client."""

    def __init__(self, app: OAuthApp, http: httpx.Client) -> None:
        self._app = app
        self._http = http

    def post(
        self, url: str, *, data: Mapping[str, str], headers: Mapping[str, str], auth: ClientAuth
    ) -> httpx.Response:
        url, prepared, body = auth.prepare("POST", url, dict(headers), urlencode(dict(data)))
        try:
            return self._http.post(url, content=body, headers=prepared)
        except httpx.TransportError as exc:  # retryable, and named: not a defect
            raise TransportError(
                self._app.provider,
                f"token endpoint unreachable ({self._app.endpoint_setting}): {type(exc).__name__}",
            ) from exc


class _Client(OAuth2Client):  # type: ignore[misc]  # Authlib is untyped
    """Authlib's client with the provider's reading of a token answer."""

    def __init__(
        self, app: OAuthApp, http: httpx.Client, *, scope: str | None, redirect_uri: str | None
    ) -> None:
        super().__init__(
            _HttpxSession(app, http),
            client_id=app.client_id,
            client_secret=app.client_secret,
            token_endpoint_auth_method=app.auth_method,
            scope=scope,
            redirect_uri=redirect_uri,
        )
        self._app = app

    def parse_response_token(self, resp: httpx.Response) -> Any:
        """Our errors for refused answers (Zoho's come with HTTP 200), Authlib's token else."""
        try:
            payload = resp.json() if resp.content else None
        except ValueError:
            payload = None
        error = payload.get("error") if isinstance(payload, dict) else None
        if error:
            raise self._app.refused(str(error), resp)
        if not resp.is_success or not isinstance(payload, dict):
            raise self._app.classify(resp)
        if self._app.rotates and not payload.get("refresh_token"):
            raise ApiError(self._app.provider, "the token answer carries no new refresh token")
        return super().parse_response_token(resp)
