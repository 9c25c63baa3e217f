"""Safety-net polls that back off while they find nothing new.

Webhooks are the main path; a poll only catches what a lost webhook missed. Every poll costs a
Xero call, and a Starter app has 1,000 calls a day per organisation (FACTS "The 2026 platform"),
so a poll every 5 minutes (288 a day) cannot stay. Beat ticks often (ZXS_POLL_TICK_SECONDS) but
each connection's poll runs only when due: after a poll that found something new the interval is
the base again, after one that found nothing it doubles, up to a cap. The cap is what bounds
both the idle cost (86,400 / cap calls a day) and how late a lost webhook is caught (cap + tick).

State per poll and connection in Redis (`zxs:poll:<kind>:<connection>`: interval, next_at); a
connection is claimed when its poll is sent, so a queued poll is not sent twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import redis

from workers import keys


def next_interval(current: float | None, found: bool, base: float, cap: float) -> float:
    """Pure: base after a find (or the first poll), else twice the last interval, up to cap."""
    if found or current is None:
        return base
    return min(cap, current * 2)


@dataclass(frozen=True)
class PollSchedule:
    """When each connection's poll of one kind is due."""

    redis: redis.Redis
    kind: str
    base: float
    cap: float

    def _key(self, connection: str) -> str:
        return keys.POLL(self.kind, connection)

    def state(self, connection: str) -> tuple[float | None, float | None]:
        """(current interval, next due time) of a connection; None before its first poll."""
        fields = self.redis.hmget(self._key(connection), ["interval", "next_at"])
        interval, next_at = cast(list[str | None], fields)
        return (float(interval) if interval else None, float(next_at) if next_at else None)

    def claim_due(self, connections: list[str], now: float) -> list[str]:
        """The connections whose poll is due; each is held for one base interval (a poll still
        queued is not sent again) until `finished` sets its next time."""
        due = []
        for name in connections:
            _, next_at = self.state(name)
            if next_at is None or now >= next_at:
                self.redis.hset(self._key(name), "next_at", now + self.base)
                due.append(name)
        return due

    def finished(self, connection: str, now: float, found: bool) -> float:
        """Record a poll's outcome; the interval until the next one."""
        current, _ = self.state(connection)
        interval = next_interval(current, found, self.base, self.cap)
        self.redis.hset(
            self._key(connection), mapping={"interval": interval, "next_at": now + interval}
        )
        return interval
