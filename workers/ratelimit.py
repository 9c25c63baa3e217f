"""One rate limiter per Xero tenant (and Xero app, and Zoho org), shared by every worker process.

Xero allows each app, per tenant, 5 calls in flight, 60 a minute and 5,000 a day, and 10,000 a
minute across tenants; its windows are fixed, not rolling, and reset at a different moment per
tenant (developer.xero.com/faq/limits, and Xero staff's answers on when windows reset). Zoho
CRM counts credits over a rolling day and concurrent calls per org (Zoho's API limits page).

Why a Redis Lua script and not the `limits` library: `limits` keeps one counter per limit and
spends it on `hit()`. Here a call must pass a minute window, a day window, the app's window and a
concurrency semaphore *together* (spending nothing when any one refuses), and the fixed windows
must follow Xero's phase, which we only learn afterwards from `X-MinLimit-Remaining` and
friends. Counters cannot be re-cut when the phase moves; a log of admission times (a sorted set
per window) can, and one script checks and spends everything atomically.

Fixed windows: a window starts at `anchor + k * length` (the first call anchors it, as Xero's
does). A call admitted within `guard` seconds of a window's edge may land in either window at
Xero, so it goes only while both windows have room, and is counted in both (its second entry,
scored in the neighbouring window, in the window's `:edges` set). Edges used to admit nothing
for a guard either side: a second of every minute with no call for each tenant, and another
for the whole app at the app window's edge (issue #19: the quiet tenants' slowest events).
The anchor is the first call's admission itself: Xero's window began when that call arrived,
a network delay later, so a later call admitted at a window's start lands in Xero's previous
window only if it is faster than that first call by more than the guard (an anchor a guard
earlier left no margin there at all: any call faster than the first, e.g. one that needs no
new connection, was counted in the previous, full window and refused). Each answer's remaining
count is compared with the log: if Xero counted far fewer calls than we admitted before that
call, its window began later than ours and the anchor moves to the call Xero counted first; if
Xero counted more than we ever admitted in that window (its edge calls included), the
difference is booked as placeholder entries (someone else spent them) so this window admits
that many fewer.

Concurrency: a slot is a lease in a sorted set scored by its expiry, released after the answer;
the lease timeout returns the slot of a worker that was killed mid-call.

When the limiter says wait: a wait under `MAX_BLOCK_SECONDS` sleeps here, a longer one raises
`RateLimited` with that wait, so the stage task is rescheduled with a countdown (workers/policies)
and the worker is free meanwhile.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import redis

from schemas.errors import RateLimited
from workers import keys
from workers.redis import registered

if TYPE_CHECKING:
    from workers.settings import Settings

MAX_BLOCK_SECONDS = 1.0
# Placeholders one answer may book. `used` is our limit less what Xero says remains, so a limit
# set far above Xero's (ZXS_XERO_PER_MINUTE=10000000) would have one script book millions of
# entries and block Redis, broker included, for minutes; past this cap the difference is booked
# over the next answers, and meanwhile Xero's own 429 and Retry-After hold the calls back.
MAX_BOOKED_PER_ANSWER = 100
CONCURRENCY_POLL_MS = 25
# A window's phase is kept for two days (or two windows): Xero's windows tick on when idle.
ANCHOR_TTL_MS = 2 * 86_400_000

# KEYS: slots, then per window its log, anchor and edge calls. ARGV: lease, lease ms,
# concurrent, guard, poll, anchor ttl, then per window name, limit, length, fixed.
_ACQUIRE = """
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000 + math.floor(tonumber(now_t[2]) / 1000)
local lease, lease_ms = ARGV[1], tonumber(ARGV[2])
local concurrent, guard, poll = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local n = (#KEYS - 1) / 3
local wait, problem = 0, ''
local edge = {}
local function spent(log, edges, from, to)
  return redis.call('ZCOUNT', log, from, '(' .. to) + redis.call('ZCOUNT', edges, from, '(' .. to)
end
for i = 1, n do
  local log, anchor_key, edges = KEYS[3 * i - 1], KEYS[3 * i], KEYS[3 * i + 1]
  local a = 6 + 4 * (i - 1)
  local name, limit, len = ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local w = 0
  edge[i] = false
  redis.call('ZREMRANGEBYSCORE', log, '-inf', now - 2 * len)
  if ARGV[a + 4] == '1' then
    redis.call('ZREMRANGEBYSCORE', edges, '-inf', now - 2 * len)
    local anchor = tonumber(redis.call('GET', anchor_key))
    if anchor then
      local start = anchor + math.floor((now - anchor) / len) * len
      local offset = now - start
      if spent(log, edges, start, start + len) >= limit then
        w = len - offset + guard
      elseif offset < guard then
        if spent(log, edges, start - len, start) >= limit then w = guard - offset
        else edge[i] = start - 1 end
      elseif offset >= len - guard then
        if spent(log, edges, start + len, start + 2 * len) >= limit then w = len - offset + guard
        else edge[i] = start + len end
      end
    end
  else
    local used = redis.call('ZCOUNT', log, '(' .. (now - len), '+inf')
    if used >= limit then
      local first = redis.call('ZRANGEBYSCORE', log, '(' .. (now - len), '+inf',
        'WITHSCORES', 'LIMIT', used - limit, 1)
      w = tonumber(first[2]) + len - now + 1
    end
  end
  if w > wait then wait, problem = w, name end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if wait == 0 and redis.call('ZCARD', KEYS[1]) >= concurrent then
  wait, problem = poll, 'concurrent'
end
if wait > 0 then return {0, wait, problem, now} end
for i = 1, n do
  local log, anchor_key, edges = KEYS[3 * i - 1], KEYS[3 * i], KEYS[3 * i + 1]
  local len = tonumber(ARGV[6 + 4 * (i - 1) + 3])
  redis.call('ZADD', log, now, lease)
  redis.call('PEXPIRE', log, 2 * len)
  if edge[i] then
    redis.call('ZADD', edges, edge[i], lease)
    redis.call('PEXPIRE', edges, 3 * len)
  end
  if ARGV[6 + 4 * (i - 1) + 4] == '1' then
    if redis.call('SET', anchor_key, now, 'NX') then
      redis.call('PEXPIRE', anchor_key, math.max(2 * len, tonumber(ARGV[6])))
    end
  end
end
redis.call('ZADD', KEYS[1], now + lease_ms, lease)
redis.call('PEXPIRE', KEYS[1], lease_ms * 2)
return {1, 0, '', now}
"""

# KEYS: log, anchor, edge calls. ARGV: lease, admitted_ms, used (as the API reported it),
# guard, concurrent (calls in flight may overtake each other, so counts within that margin
# agree), anchor ttl, most placeholders one answer may book. An edge call Xero counted here is
# no call of someone else's: the placeholders count the window's edge calls as ours.
_OBSERVE = """
local log, anchor_key, edges = KEYS[1], KEYS[2], KEYS[3]
local lease, at, used = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local len, guard, concurrent, ttl = tonumber(ARGV[4]), tonumber(ARGV[5]),
  tonumber(ARGV[6]), tonumber(ARGV[7])
local anchor = tonumber(redis.call('GET', anchor_key))
if not anchor then return 0 end
local start = anchor + math.floor((at - anchor) / len) * len
local before = redis.call('ZCOUNT', log, start, at)
if before - used >= concurrent then
  local first = redis.call('ZREVRANGEBYSCORE', log, at, start, 'WITHSCORES', 'LIMIT', used - 1, 1)
  redis.call('SET', anchor_key, tonumber(first[2]) - guard, 'PX', ttl)
  return 1
end
local total = redis.call('ZCOUNT', log, start, '(' .. (start + len))
  + redis.call('ZCOUNT', edges, start, '(' .. (start + len))
for k = 1, math.min(used - total, tonumber(ARGV[8])) do
  redis.call('ZADD', log, at, 'spent:' .. lease .. ':' .. k)
end
return 0
"""


@dataclass(frozen=True)
class Window:
    """One counted limit: `name` is the problem Xero would name, `header` its remaining count."""

    name: str
    key: str
    limit: int
    seconds: float
    fixed: bool = True
    header: str | None = None


@dataclass
class Permit:
    """One admitted call: its lease and the Redis time it was admitted (ms)."""

    lease: str
    admitted_ms: int


class RateLimiter:
    """Admits calls under every window and the concurrency limit of one API scope."""

    def __init__(
        self,
        redis_client: redis.Redis,
        provider: str,
        scope: str,
        windows: list[Window],
        concurrent: int,
        lease_seconds: float,
        guard_seconds: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if any(w.fixed and guard_seconds * 4 >= w.seconds for w in windows):
            raise ValueError("the guard must be shorter than a quarter of every window")
        self._redis = redis_client
        self.provider = provider
        self._slots_key = keys.RATE_SLOTS(scope)
        self.windows = windows
        self._concurrent = concurrent
        self._lease_ms = int(lease_seconds * 1000)
        self._guard_ms = int(guard_seconds * 1000)
        self._sleep = sleep
        self._acquire = registered(redis_client, _ACQUIRE)
        self._observe = registered(redis_client, _OBSERVE)

    @contextmanager
    def slot(self) -> Iterator[Permit]:
        """Hold a slot for one call; raises RateLimited when the wait is too long to block."""
        permit = self.acquire()
        try:
            yield permit
        finally:
            self.release(permit)

    def acquire(self) -> Permit:
        lease = secrets.token_hex(8)
        blocked = 0.0
        while True:
            admitted, wait_ms, problem, now_ms = self._try(lease)
            if admitted:
                return Permit(lease, now_ms)
            wait = wait_ms / 1000
            if blocked + wait > MAX_BLOCK_SECONDS:
                raise RateLimited(self.provider, f"{problem}, local limiter", max(wait, 0.05))
            self._sleep(wait)
            blocked += wait

    def release(self, permit: Permit) -> None:
        self._redis.zrem(self._slots_key, permit.lease)

    def observe(self, permit: Permit, headers: Mapping[str, str]) -> None:
        """Bring the windows in step with the remaining counts the API reported."""
        for window in self.windows:
            raw = headers.get(window.header) if window.header else None
            if raw is None or not raw.strip().isdigit():
                continue
            used = window.limit - int(raw)
            if used < 1:
                continue
            self._observe(
                keys=[window.key, window.key + keys.ANCHOR, window.key + keys.EDGES],
                args=[
                    permit.lease,
                    permit.admitted_ms,
                    used,
                    int(window.seconds * 1000),
                    self._guard_ms,
                    self._concurrent,
                    max(ANCHOR_TTL_MS, int(window.seconds * 2000)),
                    MAX_BOOKED_PER_ANSWER,
                ],
            )

    def _try(self, lease: str) -> tuple[bool, int, str, int]:
        script_keys = [self._slots_key]
        args: list[Any] = [
            lease,
            self._lease_ms,
            self._concurrent,
            self._guard_ms,
            CONCURRENCY_POLL_MS,
            ANCHOR_TTL_MS,
        ]
        for window in self.windows:
            script_keys += [window.key, window.key + keys.ANCHOR, window.key + keys.EDGES]
            args += [window.name, window.limit, int(window.seconds * 1000), int(window.fixed)]
        result = cast(list[Any], self._acquire(keys=script_keys, args=args))
        return bool(int(result[0])), int(result[1]), str(result[2]), int(result[3])


def xero_limiter(
    redis_client: redis.Redis,
    tenant_id: str,
    client_id: str,
    *,
    per_minute: int,
    per_day: int,
    app_per_minute: int,
    concurrent: int,
    minute_seconds: float,
    lease_seconds: float,
    guard_seconds: float,
    rolling: bool = False,
) -> RateLimiter:
    """Xero: per tenant minute + day + 5 in flight, and the app's minute across tenants.

    FACTS.md says Xero's windows are fixed; Xero's own FAQ page (developer.xero.com/faq/limits/
    rate-limits) says "a rolling 60 second window" and "a rolling 24 hour window". Fixed is the
    default (it is what the sandbox does); `rolling` (ZXS_XERO_ROLLING_WINDOWS) counts rolling
    windows instead, which a fixed-window server also accepts, at some cost in throughput."""
    tenant = f"xero:{tenant_id}"
    fixed = not rolling
    windows = [
        xero_day_window(tenant_id, per_day, minute_seconds, fixed),
        Window(
            "minute",
            keys.XERO_MINUTE(tenant_id),
            per_minute,
            minute_seconds,
            fixed,
            "X-MinLimit-Remaining",
        ),
        Window(
            "appminute",
            keys.XERO_APP_MINUTE(client_id),
            app_per_minute,
            minute_seconds,
            fixed,
            "X-AppMinLimit-Remaining",
        ),
    ]
    return RateLimiter(
        redis_client, "Xero", tenant, windows, concurrent, lease_seconds, guard_seconds
    )


def xero_day_window(tenant_id: str, per_day: int, minute_seconds: float, fixed: bool) -> Window:
    """A tenant's day window (its key is shared by every worker and `xero_calls_today`)."""
    return Window(
        "day",
        keys.XERO_DAY(tenant_id),
        per_day,
        minute_seconds * 1440,
        fixed,
        "X-DayLimit-Remaining",
    )


def zoho_limiter(
    redis_client: redis.Redis,
    org_id: str,
    *,
    per_minute: int,
    per_day: int,
    concurrent: int,
    minute_seconds: float,
    lease_seconds: float,
    guard_seconds: float,
) -> RateLimiter:
    """Zoho: credits over a rolling day and calls in flight per org; a minute cap if set."""
    org = f"zoho:{org_id}"
    windows = [Window("day", keys.ZOHO_DAY(org_id), per_day, minute_seconds * 1440, fixed=False)]
    if per_minute > 0:
        windows.append(Window("minute", keys.ZOHO_MINUTE(org_id), per_minute, minute_seconds))
    return RateLimiter(redis_client, "Zoho", org, windows, concurrent, lease_seconds, guard_seconds)


@dataclass(frozen=True)
class DayUsage:
    """One connection's Xero calls in its current day window (read-only, for status pages)."""

    connection: str
    used: int
    limit: int
    tier: str
    resets_in_seconds: float | None  # fixed windows once a call anchored them; else None

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


def window_usage(redis_client: redis.Redis, window: Window) -> tuple[int, float | None]:
    """Calls counted in the window now (our admissions plus what Xero reported others spent),
    and seconds until a fixed window turns over. Reads only: never books or waits."""
    seconds, micros = redis_client.time()
    now = seconds * 1000 + micros // 1000
    length = int(window.seconds * 1000)
    if not window.fixed:
        return int(redis_client.zcount(window.key, f"({now - length}", "+inf")), None
    raw = redis_client.get(window.key + keys.ANCHOR)
    if raw is None:
        return 0, None
    anchor = int(float(cast(str, raw)))
    start = anchor + (now - anchor) // length * length
    pipe = redis_client.pipeline(transaction=False)
    pipe.zcount(window.key, start, f"({start + length}")
    pipe.zcount(window.key + keys.EDGES, start, f"({start + length}")
    used = sum(int(count) for count in pipe.execute())
    return used, (start + length - now) / 1000


def xero_calls_today(
    connection: str, *, settings: Settings | None = None, redis_client: redis.Redis | None = None
) -> DayUsage:
    """Calls used today / the daily limit for one connection's Xero tenant (the limiter's own
    day window, kept in step with `X-DayLimit-Remaining`). For `zxsync check`, `zxsync
    connections` and the console; it makes no API call."""
    from workers.redis import get_redis
    from workers.settings import get_settings

    settings = settings or get_settings()
    conn = settings.connection(connection)
    day = xero_day_window(
        conn.xero_tenant_id,
        settings.xero_day_limit(),
        settings.zxs_limit_minute_seconds,
        not settings.zxs_xero_rolling_windows,
    )
    used, resets = window_usage(redis_client or get_redis(), day)
    return DayUsage(connection, used, day.limit, settings.xero_api_tier, resets)
