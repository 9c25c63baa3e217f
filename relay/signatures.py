"""Webhook authenticity checks, constant-time so a forger learns nothing from timing."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping


def xero_signature(body: bytes, key: str) -> str:
    """Xero's `x-xero-signature`: base64(HMAC-SHA256(raw body, webhook key))."""
    return base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()


def xero_signers(body: bytes, signature: str, keys: Mapping[str, str]) -> set[str]:
    """Names whose webhook key signed `body` (connections of one Xero app share its key).

    Every key is compared, so the time taken does not depend on which one matched.
    """
    given = signature.strip().encode()
    return {
        name
        for name, key in keys.items()
        if hmac.compare_digest(xero_signature(body, key).encode(), given)
    }


def token_matches(given: str | None, expected: str) -> bool:
    """A shared secret (Zoho webhook token) compared in constant time."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())
