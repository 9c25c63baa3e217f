"""One OAuth2 token client for both providers (issue #15.6): Xero's rotation and Basic auth,
Zoho's kept refresh token and form-body secret, and answers that are a wait, not a revocation."""

from __future__ import annotations

import base64
import warnings
from collections.abc import Callable
from urllib.parse import parse_qs

import httpx
import pytest

from clients.tokens import Refresh
from clients.xero import refresh_xero_token, xero_oauth
from clients.zoho import REFRESH_BLOCK_SECONDS, refresh_zoho_token, zoho_oauth
from schemas.errors import ApiError, AuthRevoked, RateLimited, ServerError, TransportError

Answer = Callable[[httpx.Request], httpx.Response]


def http(answer: Answer, seen: list[httpx.Request] | None = None) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return answer(request)

    return httpx.Client(transport=httpx.MockTransport(handler))


def form(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


def xero(answer: Answer, seen: list[httpx.Request] | None = None) -> Refresh:
    return refresh_xero_token(http(answer, seen), "https://identity.xero.test", "xid", "xsecret")


def zoho(answer: Answer, seen: list[httpx.Request] | None = None) -> Refresh:
    return refresh_zoho_token(http(answer, seen), "https://accounts.zoho.eu", "zid", "zsecret")


def test_xero_refresh_sends_basic_auth_and_takes_the_rotated_token_and_scope() -> None:
    seen: list[httpx.Request] = []
    tokens = xero(
        lambda _: httpx.Response(
            200,
            json={
                "access_token": "a2",
                "refresh_token": "r2",
                "expires_in": 1800,
                "scope": "accounting.contacts offline_access",
            },
        ),
        seen,
    )("r1")
    (request,) = seen
    assert str(request.url) == "https://identity.xero.test/connect/token"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"xid:xsecret").decode()
    assert form(request) == {"grant_type": "refresh_token", "refresh_token": "r1"}
    assert tokens.refresh_token == "r2" and tokens.access_token == "a2"
    assert tokens.scope == "accounting.contacts offline_access"


def test_a_xero_answer_without_a_new_refresh_token_is_an_error_not_the_old_token() -> None:
    """Xero rotates on every refresh: keeping the used token would die 30 minutes later."""
    refresh = xero(lambda _: httpx.Response(200, json={"access_token": "a2", "expires_in": 1800}))
    with pytest.raises(ApiError, match="no new refresh token"):
        refresh("r1")


def test_xero_refusals_revoke_rate_limits_wait() -> None:
    with pytest.raises(AuthRevoked, match="invalid_grant"):
        xero(lambda _: httpx.Response(400, json={"error": "invalid_grant"}))("r1")
    with pytest.raises(RateLimited) as limited:
        xero(
            lambda _: httpx.Response(
                429, headers={"Retry-After": "7"}, json={"error": "rate_limit"}
            )
        )("r1")
    assert limited.value.retry_after == 7.0


def test_zoho_refresh_keeps_the_refresh_token_and_names_the_api_domain() -> None:
    seen: list[httpx.Request] = []
    tokens = zoho(
        lambda _: httpx.Response(
            200,
            json={
                "access_token": "1000.a",
                "expires_in": 3600,
                "api_domain": "https://www.zohoapis.eu",
            },
        ),
        seen,
    )("1000.r")
    (request,) = seen
    assert "authorization" not in request.headers
    assert form(request) == {
        "grant_type": "refresh_token",
        "refresh_token": "1000.r",
        "client_id": "zid",
        "client_secret": "zsecret",
    }
    assert tokens.refresh_token == "1000.r"
    assert tokens.api_domain == "https://www.zohoapis.eu"


def test_zohos_access_denied_is_a_wait_and_invalid_client_a_reconnect() -> None:
    with pytest.raises(RateLimited) as blocked:
        zoho(lambda _: httpx.Response(200, json={"error": "Access Denied"}))("1000.r")
    assert blocked.value.retry_after == REFRESH_BLOCK_SECONDS
    with pytest.raises(AuthRevoked, match="invalid_client"):
        zoho(lambda _: httpx.Response(200, json={"error": "invalid_client"}))("1000.r")


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(503, text="<html>Service Unavailable</html>"),
        httpx.Response(500, json={"error": "internal_error"}),
    ],
)
def test_a_zoho_token_endpoint_outage_is_retryable_not_a_revoked_token(
    answer: httpx.Response,
) -> None:
    """Before: a 5xx was remembered as a refused refresh token (or crashed on its HTML), so
    every later job demanded a reconnect."""
    with pytest.raises(ServerError):
        zoho(lambda _: answer)("1000.r")


@pytest.mark.parametrize("refresh", [zoho, xero])
def test_an_unreachable_token_endpoint_is_a_named_transport_error(
    refresh: Callable[[Answer], Refresh],
) -> None:
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(TransportError, match="token endpoint unreachable"):
        refresh(unreachable)("r1")


@pytest.mark.parametrize("name", ["Xero", "Zoho"])
def test_the_consent_uses_no_deprecated_authlib_api(name: str) -> None:
    """The authorization URL and code exchange go through the same client, with no warning
    (Authlib 1.9 deprecates its httpx integration for httpx2)."""
    seen: list[httpx.Request] = []
    app = (
        xero_oauth("https://identity.xero.test", "xid", "xsecret")
        if name == "Xero"
        else zoho_oauth("https://accounts.zoho.eu", "zid", "zsecret")
    )
    client = http(
        lambda _: httpx.Response(
            200, json={"access_token": "a", "refresh_token": "r", "expires_in": 60, "scope": "s"}
        ),
        seen,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        url, state = app.client(
            client, scope="s", redirect_uri="http://127.0.0.1/cb"
        ).create_authorization_url("https://login.test/authorize")
        callback = f"http://127.0.0.1/cb?code=c1&state={state}"
        tokens = app.exchange(client, app.token_url, callback, state, "http://127.0.0.1/cb")
    assert f"state={state}" in url and "client_id=" in url and "scope=s" in url
    body = form(seen[0])
    assert body["code"] == "c1" and body["grant_type"] == "authorization_code"
    assert body["redirect_uri"] == "http://127.0.0.1/cb"
    assert ("client_secret" in body) == (name == "Zoho")
    assert tokens.refresh_token == "r" and tokens.scope == "s"
