"""Rate limits (per tenant in flight, a minute and a day; per app a minute: fixed windows
from a tenant's first call, a refused call spends nothing) and idempotency keys (per
app, replayed for 6 minutes, errors too)."""

from __future__ import annotations

import copy
import math
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sandbox.xero.base import SandboxBase
from sandbox.xero.common import (
    Reply,
    validation_error,
)


@dataclass
class _Window:
    """A fixed rate-limit window that starts with the first call and then ticks on."""

    length: float
    start: float | None = None
    used: int = 0

    def roll(self, now: float) -> None:
        if self.start is None:
            self.start = now
        elif now >= self.start + self.length:
            self.start += math.floor((now - self.start) / self.length) * self.length
            self.used = 0

    def retry_after(self, now: float) -> int:
        start = now if self.start is None else self.start
        return max(1, math.ceil(start + self.length - now))


@dataclass
class _Limits:
    minute: _Window
    day: _Window
    in_flight: int = 0


@dataclass
class Admission:
    """Outcome of the rate limiter: `problem` is None when the call may proceed."""

    problem: str | None
    retry_after: int | None
    headers: dict[str, str]


@dataclass
class _Idempotent:
    first_at: float
    fingerprint: str
    reply: Reply


class LimitsState(SandboxBase):
    """Rate-limit windows and idempotent replays."""

    def _init_state(self) -> None:
        super()._init_state()
        self._limits: dict[str, _Limits] = {}
        self._app_windows: dict[str, _Window] = {}
        self._idempotency: dict[tuple[str, str], _Idempotent] = {}
        self._rate_limited: Counter[str] = Counter(
            {"minute": 0, "day": 0, "concurrent": 0, "appminute": 0}
        )
        self._in_flight_from: Counter[tuple[str, str]] = Counter()

    def admit(self, client_id: str, tenant_id: str | None) -> Admission:
        """Spend one call of each window, or name the limit it would break (nothing spent)."""
        limits = self.config.xero_limits
        with self.lock:
            now = self.clock()
            app = self._app_windows.setdefault(client_id, _Window(self.config.minute_seconds))
            app.roll(now)
            checks: list[tuple[str, _Window, int]] = []
            state: _Limits | None = None
            if tenant_id is not None:
                state = self._limits.get(tenant_id)
                if state is None:
                    state = _Limits(
                        _Window(self.config.minute_seconds),
                        _Window(self.config.minute_seconds * 1440),
                    )
                    self._limits[tenant_id] = state
                state.day.roll(now)
                state.minute.roll(now)
                checks += [
                    ("day", state.day, limits.per_day),
                    ("minute", state.minute, limits.per_minute),
                ]
            checks.append(("appminute", app, limits.app_per_minute))
            problem: str | None = None
            retry: int | None = None
            if self.config.enforce_limits:
                for name, window, limit in checks:
                    if window.used >= limit:
                        problem, retry = name, window.retry_after(now)
                        break
                if problem is None and state is not None and state.in_flight >= limits.concurrent:
                    problem = "concurrent"
            if problem is None:
                for _, window, _limit in checks:
                    window.used += 1
                if state is not None:
                    state.in_flight += 1
            else:
                self._rate_limited[problem] += 1
            headers = {"X-AppMinLimit-Remaining": str(max(0, limits.app_per_minute - app.used))}
            if state is not None:
                headers["X-DayLimit-Remaining"] = str(max(0, limits.per_day - state.day.used))
                headers["X-MinLimit-Remaining"] = str(max(0, limits.per_minute - state.minute.used))
            return Admission(problem, retry, headers)

    @contextmanager
    def answering(self, peer: str, route: str) -> Iterator[None]:
        """An admitted call from the client address `peer` while its answer is being made."""
        with self.lock:
            self._in_flight_from[(peer, route)] += 1
        try:
            yield
        finally:
            with self.lock:
                self._in_flight_from[(peer, route)] -= 1

    def in_flight_from(self, peer: str, route: str) -> int:
        """Calls of `route` ("PUT /Invoices") from `peer` admitted and not yet answered: the
        across-hosts run (zxsync/hosts.py) kills a worker host while one of its writes is."""
        with self.lock:
            return self._in_flight_from[(peer, route)]

    def release(self, tenant_id: str) -> None:
        """The call is answered: free its concurrency slot."""
        with self.lock:
            self._limits[tenant_id].in_flight -= 1

    def idempotent(
        self, client_id: str, key: str, fingerprint: str, run: Callable[[], Reply]
    ) -> Reply:
        """Replay the first answer for a key, refuse a different request, else run and keep."""
        with self.lock:
            now = self.clock()
            entry = self._idempotency.get((client_id, key))
            if entry is not None and now - entry.first_at < self.config.idempotency_window_seconds:
                if entry.fingerprint != fingerprint:
                    return Reply(
                        400,
                        validation_error(
                            f"Idempotency Key: {key} is used with a different request.", []
                        ),
                    )
                return copy.deepcopy(entry.reply)
            reply = run()
            kept = _Idempotent(now, fingerprint, copy.deepcopy(reply))
            self._idempotency[(client_id, key)] = kept
            return reply
