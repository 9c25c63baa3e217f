"""Secrets obfuscated in one place (as Saleor's webhook code does), before anything leaves us.

Dead letters, Sentry events, alerts and logs all pass through `redact`, which removes the
configured secret values themselves and anything shaped like a credential: bearer and Zoho
tokens, and `client_secret` / `refresh_token` / `access_token` / `password` parameters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

MASK = "[redacted]"
_PATTERNS = [
    re.compile(r"(?i)\b(Bearer|Zoho-oauthtoken|Basic)\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(
        r"(?i)\b(client_secret|refresh_token|access_token|id_token|password|token)"
        r"([\"']?\s*[=:]\s*[\"']?)[^\s&\"',}]{6,}"
    ),
]


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every known secret and credential-shaped value replaced by a mask."""
    for secret in sorted(
        {s for s in (*secrets, *_configured_secrets()) if len(s) >= 6}, key=len, reverse=True
    ):
        text = text.replace(secret, MASK)
    text = _PATTERNS[0].sub(lambda m: f"{m.group(1)} {MASK}", text)
    return _PATTERNS[1].sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)


@lru_cache(maxsize=1)
def _configured_secrets() -> tuple[str, ...]:
    """Secret values from settings and connections (read once per process)."""
    from schemas.errors import ConfigurationError
    from workers.settings import get_settings

    settings = get_settings()
    values = [
        settings.xero_client_secret.get_secret_value(),
        settings.zoho_client_secret.get_secret_value(),
        settings.zxs_smtp_password.get_secret_value(),
    ]
    try:
        connections = settings.connections().values()
    except (ValueError, ConfigurationError):
        connections = []  # type: ignore[assignment]
    for conn in connections:
        for token in (
            conn.xero_refresh_token,
            conn.zoho_refresh_token,
            conn.xero_webhook_key,
            conn.zoho_webhook_token,
        ):
            if token:
                values.append(token.get_secret_value())
    return tuple(v for v in values if v)
