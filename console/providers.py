"""Facts about a connection that other parts of the system own, read through one function each
(granted OAuth scopes from the token store, the Zoho notification channel's expiry from
tasks/zoho_channels.py), so the console shows "not known" where a fact was never recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import redis

from schemas.connection import Connection
from workers.settings import Settings


@dataclass(frozen=True)
class Scopes:
    """Granted vs needed OAuth scopes of one provider."""

    provider: str
    granted: tuple[str, ...]
    needed: tuple[str, ...]

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(s for s in self.needed if s not in self.granted)


def granted_scopes(
    redis_client: redis.Redis, connection: Connection, settings: Settings
) -> list[Scopes] | None:
    """The Xero scopes the stored consent granted against those each feature needs (the granted
    alternative where a feature takes several), or None: no consent recorded, or no token key
    in this process to read it with."""
    from clients.tokens import TokenCipher
    from clients.tokens import granted_scopes as stored_scopes
    from schemas.errors import ConfigurationError
    from schemas.scopes import FEATURES

    try:
        cipher = TokenCipher(settings.zxs_token_key.get_secret_value())
    except ConfigurationError:
        return None
    granted = stored_scopes(connection.name, "Xero", redis_client=redis_client, cipher=cipher)
    if granted is None:
        return None
    needed = tuple(next((s for s in f.any_of if s in granted), f.any_of[0]) for f in FEATURES)
    return [Scopes("Xero", tuple(sorted(granted)), needed)]


def channel_expiry(redis_client: redis.Redis, connection: Connection) -> datetime | None:
    """When the Zoho notification channel expires, or None: no channel was made."""
    from tasks.zoho_channels import channel_expiry as stored_expiry

    return stored_expiry(connection.name, redis_client=redis_client)
