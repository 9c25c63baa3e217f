"""The one place that turns HTTP into results or classified errors (schemas/errors.py).

Each provider client names its classifier; this module owns the transport concerns shared by
both: the shared rate limiter (every call, replays included, passes through it here and nowhere
else), bearer tokens with one refresh-and-replay on 401, timeouts, and mapping transport
failures to retryable errors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any, Protocol

import httpx

from clients.tokens import TokenManager
from schemas.errors import ApiError, ServerError, TransportError
from schemas.wire import dumps, loads

Classifier = Callable[[httpx.Response], ApiError]


class Limiter(Protocol):
    """The shared rate limiter (workers/ratelimit.py): a slot per call, then the answer's
    remaining-count headers."""

    def slot(self) -> AbstractContextManager[Any]: ...

    def observe(self, permit: Any, headers: Mapping[str, str]) -> None: ...


class ApiClient:
    """Authenticated JSON requests against one API for one connection."""

    provider = "api"

    def __init__(
        self,
        http: httpx.Client,
        base_url: str,
        tokens: TokenManager,
        classify: Classifier,
        auth_scheme: str,
        extra_headers: Mapping[str, str] | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._tokens = tokens
        self._classify = classify
        self._auth_scheme = auth_scheme
        self._extra_headers = dict(extra_headers or {})
        self._limiter = limiter

    def base_url(self) -> str:
        return self._base_url

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
    ) -> httpx.Response:
        """Send a request (a JSON `body` or multipart `files`); return a 2xx answer or raise
        a classified error."""
        token = self._tokens.current().access_token
        response = self._send(method, path, token, params, body, headers, files)
        if response.status_code == 401 and not insufficient_scope(response):
            token = self._tokens.refresh_after_401(token).access_token
            response = self._send(method, path, token, params, body, headers, files)
        if response.is_success:
            return response
        raise self._classify(response)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Like request(), returning the parsed JSON body (Decimals exact); None for 204."""
        response = self.request(method, path, **kwargs)
        return loads(response.content) if response.content else None

    def _send(
        self,
        method: str,
        path: str,
        token: str,
        params: Mapping[str, str] | None,
        body: Any,
        headers: Mapping[str, str] | None,
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
    ) -> httpx.Response:
        all_headers = {
            "Authorization": f"{self._auth_scheme} {token}",
            "Accept": "application/json",
            **self._extra_headers,
            **(headers or {}),
        }
        content = None
        url = self._url(path)
        if body is not None:
            content = dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        elif files is not None:
            encoded = httpx.Request(method, url, files=files)  # httpx encodes the multipart
            content = encoded.read()
            all_headers["Content-Type"] = encoded.headers["Content-Type"]
        if self._limiter is None:
            return self._transmit(method, path, url, params, content, all_headers)
        with self._limiter.slot() as permit:
            response = self._transmit(method, path, url, params, content, all_headers)
            self._limiter.observe(permit, response.headers)
            return response

    def _transmit(
        self,
        method: str,
        path: str,
        url: str,
        params: Mapping[str, str] | None,
        content: bytes | None,
        headers: dict[str, str],
    ) -> httpx.Response:
        try:
            return self._http.request(method, url, params=params, content=content, headers=headers)
        except httpx.TimeoutException as exc:
            raise TransportError(self.provider, f"timed out: {method} {path}") from exc
        except httpx.TransportError as exc:
            raise TransportError(self.provider, f"{type(exc).__name__}: {method} {path}") from exc

    def _url(self, path: str) -> str:
        return f"{self._base_url}/{path.lstrip('/')}"


def server_or_generic(provider: str, response: httpx.Response, message: str) -> ApiError:
    """Fallback classification shared by both providers."""
    text = f"HTTP {response.status_code}: {message}"
    if response.status_code >= 500:
        return ServerError(provider, text, status=response.status_code)
    return ApiError(provider, text, status=response.status_code)


def insufficient_scope(response: httpx.Response) -> bool:
    """A 401 for a scope the token lacks (RFC 6750 §3.1), not for an expired token."""
    return "insufficient_scope" in response.headers.get("www-authenticate", "")


def body_text(response: httpx.Response, limit: int = 500) -> str:
    return response.text[:limit].strip() or response.reason_phrase
