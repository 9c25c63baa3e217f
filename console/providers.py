"""Facts about a connection that other parts of the system own, read through one function each
so the console shows "not known yet" until they exist: granted OAuth scopes and the Zoho
notification channel's expiry are being added elsewhere (issue #21); wire them here then.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import redis

from schemas.connection import Connection


@dataclass(frozen=True)
class Scopes:
    """Granted vs needed OAuth scopes of one provider."""

    provider: str
    granted: tuple[str, ...]
    needed: tuple[str, ...]

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(s for s in self.needed if s not in self.granted)


def granted_scopes(redis_client: redis.Redis, connection: Connection) -> list[Scopes] | None:
    """The scopes each provider granted, or None: not recorded by this version (#21)."""
    return None


def channel_expiry(redis_client: redis.Redis, connection: Connection) -> datetime | None:
    """When the Zoho notification channel expires, or None: not recorded by this version."""
    return None
