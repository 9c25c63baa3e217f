"""Secrets obfuscated in one place (as Saleor's webhook code does), before anything leaves us.

Dead letters, Sentry events, alerts, structured logs and access logs all pass through `redact`,
which removes the configured secret values themselves and anything shaped like a credential:
bearer, Zoho and JWT tokens, long opaque tokens (refresh tokens that rotated after start-up are
not among the configured values), Slack webhook URLs, passwords and keys inside URLs
(`redis://:PASSWORD@`, a Sentry DSN's key), and `client_secret` / `refresh_token` /
`access_token` / `password` / `token` parameters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import urlsplit

MASK = "[redacted]"
_TOKEN_CHARS = r"A-Za-z0-9_-"
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # Slack-compatible incoming webhooks: the path is the credential
    (
        re.compile(r"(?i)(https://hooks\.slack\.com/)(?:services|workflows|triggers)/[^\s\"'<>]+"),
        rf"\1{MASK}",
    ),
    # user:password@ and a bare key@ (Sentry DSN) in any URL
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@\"']*:)[^\s@/\"']+@"), rf"\1{MASK}@"),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[0-9a-z]{16,}@"), rf"\1{MASK}@"),
    (re.compile(r"(?i)\b(Bearer|Zoho-oauthtoken|Basic)\s+[A-Za-z0-9._~+/=-]{8,}"), rf"\1 {MASK}"),
    (
        re.compile(
            r"(?i)\b(client_secret|refresh_token|access_token|id_token|password|token)"
            r"([\"']?\s*[=:]\s*[\"']?)[^\s&\"',}]{6,}"
        ),
        rf"\1\2{MASK}",
    ),
    # bare tokens: JWTs (Xero access tokens), Zoho's 1000.<hex>.<hex>, long opaque ones
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"), MASK),
    (re.compile(r"\b1000\.[0-9a-f]{32}\.[0-9a-f]{32}\b"), MASK),
    (
        re.compile(
            rf"(?<![{_TOKEN_CHARS}])(?=[{_TOKEN_CHARS}]*[A-Z])(?=[{_TOKEN_CHARS}]*[a-z])"
            rf"(?=[{_TOKEN_CHARS}]*[0-9])[{_TOKEN_CHARS}]{{40,}}(?![{_TOKEN_CHARS}])"
        ),
        MASK,
    ),
]


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every known secret and credential-shaped value replaced by a mask."""
    for secret in sorted(
        {s for s in (*secrets, *_configured_secrets()) if len(s) >= 6}, key=len, reverse=True
    ):
        text = text.replace(secret, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def mask_query(text: str) -> str:
    """An access log's request target without its query string (`/path?[redacted]`): tokens
    and signatures travel there, and proxies and log shippers keep every line."""
    return re.sub(r"\?[^\s\"]*", f"?{MASK}", text)


@lru_cache(maxsize=1)
def _configured_secrets() -> tuple[str, ...]:
    """Secret values from settings and connections (read once per process; none when the
    settings themselves do not load, which is reported elsewhere)."""
    from schemas.errors import ConfigurationError
    from workers.settings import get_settings

    try:
        settings = get_settings()
    except ConfigurationError:
        return ()
    values = [
        settings.xero_client_secret.get_secret_value(),
        settings.zoho_client_secret.get_secret_value(),
        settings.zxs_smtp_password.get_secret_value(),
        settings.sentry_dsn.get_secret_value(),
        settings.zxs_alert_webhook_url.get_secret_value(),
        settings.flower_basic_auth.get_secret_value(),
        *settings.zxs_token_key.get_secret_value().split(","),
    ]
    if settings.redis_url:
        values.append(urlsplit(settings.redis_url).password or "")
    try:
        connections = list(settings.connections().values())
    except (ValueError, ConfigurationError):
        connections = []
    for conn in connections:
        for token in (
            conn.xero_refresh_token,
            conn.zoho_refresh_token,
            conn.xero_webhook_key,
            conn.zoho_webhook_token,
        ):
            if token:
                values.append(token.get_secret_value())
    return tuple(v.strip() for v in values if v and v.strip())
